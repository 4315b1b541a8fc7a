"""The OCI bundle of one container instance: ``config.json`` and a rootfs of read-only bind mounts.

The rootfs is an empty directory; everything the worker needs from the host (``/usr``, the Python install,
its site-packages, the edgefc source, a few ``/etc`` files) is bind-mounted into it read-only at the same
path it has on the host, so ``sys.executable`` and the editable install resolve inside exactly as outside.
Parent directories runc creates in the rootfs are mode 0755, which is what lets the unprivileged container
user reach a Python that lives under the host's ``/root`` (mode 0700, DESIGN §8).
"""

from __future__ import annotations

import json
import os
import site
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edgefc
from edgefc import node as nodejs
from edgefc.errors import ValidationError
from edgefc.sandbox.base import InstanceSpec
from edgefc.sandbox.cgroups import CPU_PERIOD_US
from edgefc.sandbox.seccomp import default_profile

WORKER_SOCKET = "/run/edgefc/worker.sock"
CODE_DIR = "/code"
NOBODY = 65534
PIDS_LIMIT = 512
TMP_SIZE = "64m"

# Docker's default capability set: the bounding set of an unprivileged container.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip
ALL_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "resolv.conf", "protocols",
    "services", "host.conf", "gai.conf", "ssl", "ca-certificates",
)  # fmt: skip
RO_BIND = ["rbind", "ro", "nosuid", "nodev"]


@dataclass(frozen=True)
class PortMapping:
    """One ``host:container[/proto]`` entry of ``container.ports``."""

    host: int
    container: int
    proto: str = "tcp"

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Parse ``8080:80/tcp``; raises ValidationError."""
        ports, _, proto = text.partition("/")
        proto = proto or "tcp"
        host, sep, cont = ports.partition(":")
        if not sep or proto not in ("tcp", "udp") or not host.isdigit() or not cont.isdigit():
            raise ValidationError([f"{text!r}: expected host:container[/tcp|udp]"])
        mapping = cls(int(host), int(cont), proto)
        if not (1 <= mapping.host <= 65535 and 1 <= mapping.container <= 65535):
            raise ValidationError([f"{text!r}: ports are 1..65535"])
        return mapping


@dataclass(frozen=True)
class DeviceMapping:
    """One ``host[:container[:perms]]`` entry of ``container.devices``."""

    host: str
    container: str
    perms: str = "rwm"

    @classmethod
    def parse(cls, text: str) -> DeviceMapping:
        """Parse ``/dev/ttyUSB0:/dev/ttyS0:rwm``; raises ValidationError."""
        parts = text.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValidationError([f"{text!r}: expected host[:container[:perms]]"])
        host = parts[0]
        cont = parts[1] if len(parts) > 1 and parts[1] else host
        perms = parts[2] if len(parts) > 2 else "rwm"
        problems = [
            f"{text!r}: {p} must be an absolute path" for p in dict.fromkeys((host, cont)) if p[0] != "/"
        ]
        if not perms or set(perms) - set("rwm") or len(set(perms)) != len(perms):
            problems.append(f"{text!r}: permissions are a combination of r, w, m")
        if problems:
            raise ValidationError(problems)
        return cls(host, os.path.normpath(cont), perms)


@dataclass(frozen=True)
class VolumeMapping:
    """One ``source:target[:ro|rw]`` entry of ``container.volumes`` (default ``rw``)."""

    source: str
    target: str
    read_only: bool = False

    @classmethod
    def parse(cls, text: str) -> VolumeMapping:
        """Parse ``/var/lib/app:/data:ro``; raises ValidationError."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValidationError([f"{text!r}: expected source:target[:ro|rw]"])
        mode = parts[2] if len(parts) == 3 else "rw"
        problems = [f"{text!r}: {p} must be an absolute path" for p in parts[:2] if not p.startswith("/")]
        if mode not in ("ro", "rw"):
            problems.append(f"{text!r}: mode must be ro or rw")
        if problems:
            raise ValidationError(problems)
        return cls(os.path.normpath(parts[0]), os.path.normpath(parts[1]), mode == "ro")


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def python_runtime_dirs() -> list[str]:
    """The host directories the worker's Python needs, outermost only, found from the running interpreter."""
    found = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    found.add(os.path.dirname(os.path.realpath(sys.executable)))
    found.update(os.path.realpath(p) for p in site.getsitepackages())
    # edgefc may be an editable install: mount the folder its package lives in (e.g. <checkout>/src).
    found.add(os.path.dirname(os.path.dirname(os.path.realpath(edgefc.__file__))))
    dirs: list[str] = []
    for path in sorted(found):
        if path == "/" or any(_inside(path, d) for d in (*SYSTEM_DIRS, *dirs)):
            continue
        dirs.append(path)
    return dirs


def worker_argv() -> list[str]:
    """How the container starts the worker: the same interpreter path as on the host, isolated mode."""
    exe = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
    return [exe, "-I", "-m", "edgefc.worker"]


def runtime_argv(spec: InstanceSpec) -> list[str]:
    """The worker command line for ``spec.runtime``: Node.js functions start the Node.js worker."""
    return nodejs.worker_argv(spec.memory_mb) if nodejs.is_node(spec.runtime) else worker_argv()


def held_capabilities() -> list[str]:
    """Every capability in our own bounding set: "all" for a privileged container is all we can pass on."""
    bounding = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bounding = int(line.split()[1], 16)
    return [name for bit, name in enumerate(ALL_CAPS) if bounding >> bit & 1]


def _bind(source: str, target: str, options: list[str]) -> dict[str, Any]:
    return {"destination": target, "type": "bind", "source": source, "options": options}


def _base_mounts(privileged: bool) -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={TMP_SIZE}"]},
    ]  # fmt: skip


def _device_node(mapping: DeviceMapping, uid: int, gid: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The node to create and the device-cgroup rule allowing it; raises ValidationError when not a device."""
    try:
        st = os.stat(mapping.host)
    except OSError as exc:
        raise ValidationError([f"{mapping.host}: {exc.strerror}"]) from exc
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise ValidationError([f"{mapping.host}: not a device node"])
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    # Owned by the container user: mapping a device is the point, so the function must be able to open it.
    node = {"path": mapping.container, "type": kind, "major": major, "minor": minor,
            "fileMode": stat.S_IMODE(st.st_mode), "uid": uid, "gid": gid}  # fmt: skip
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": mapping.perms}
    return node, rule


def _etc_mounts(bundle: Path, hostname: str) -> list[dict[str, Any]]:
    etc = bundle / "etc"
    etc.mkdir(mode=0o755, exist_ok=True)
    own = {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:{NOBODY}:{NOBODY}:nobody:/tmp:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nnogroup:x:{NOBODY}:\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n",
        "hostname": hostname + "\n",
    }
    mounts = []
    for name, text in own.items():
        (etc / name).write_text(text)
        (etc / name).chmod(0o644)
        mounts.append(_bind(str(etc / name), f"/etc/{name}", ["bind", "ro", "nosuid", "nodev"]))
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        if os.path.exists(path):
            mounts.append(_bind(os.path.realpath(path), path, RO_BIND))
    return mounts


def build_config(
    spec: InstanceSpec,
    bundle: Path,
    *,
    cgroups_path: str,
    netns_path: str | None,
    argv: list[str],
) -> dict[str, Any]:
    """The OCI runtime config for ``spec``; raises ValidationError for a bad device or volume entry."""
    box = spec.container
    if box.privileged and box.devices:
        raise ValidationError(["devices: not allowed with privileged (a privileged container has them all)"])
    hostname = spec.function[:63] or "edgefc"
    uid = gid = 0 if box.privileged else NOBODY
    mounts = _base_mounts(box.privileged)
    if box.privileged:
        # All host devices: the host's /dev, recursively, instead of the minimal tmpfs one.
        mounts[1:5] = [_bind("/dev", "/dev", ["rbind", "nosuid"])]
    for path in SYSTEM_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            mounts.append(_bind(path, path, RO_BIND))
    mounts += [_bind(d, d, RO_BIND) for d in python_runtime_dirs()]
    if nodejs.is_node(spec.runtime):
        mounts += [_bind(d, d, RO_BIND) for d in nodejs.runtime_dirs()]
    mounts += _etc_mounts(bundle, hostname)
    mounts.append(_bind(os.path.abspath(spec.code_dir), CODE_DIR, ["rbind", "ro", "nosuid", "nodev"]))
    mounts.append(
        _bind(os.path.abspath(spec.socket_path), WORKER_SOCKET, ["bind", "rw", "nosuid", "nodev", "noexec"])
    )
    for text in box.volumes:
        vol = VolumeMapping.parse(text)
        mounts.append(
            _bind(vol.source, vol.target, ["rbind", "ro" if vol.read_only else "rw", "nosuid", "nodev"])
        )

    devices, rules = [], [{"allow": False, "access": "rwm"}]
    for text in box.devices:
        node, rule = _device_node(DeviceMapping.parse(text), uid, gid)
        devices.append(node)
        rules.append(rule)
    if box.privileged:
        rules = [{"allow": True, "access": "rwm"}]

    caps: dict[str, list[str]]
    if box.privileged:
        every = held_capabilities()
        caps = {k: every for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    else:
        # Non-root: capabilities only bound what setuid-free code could ever gain (nothing, with NNP).
        caps = {
            "bounding": list(DEFAULT_CAPS),
            "effective": [],
            "permitted": [],
            "inheritable": [],
            "ambient": [],
        }
        if netns_path is None:
            # No own netns to lower ip_unprivileged_port_start in: low ports need the capability itself.
            low = ["CAP_NET_BIND_SERVICE"]
            caps.update(effective=low, permitted=low, inheritable=low, ambient=low)

    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", **spec.env}
    if nodejs.is_node(spec.runtime):
        env = nodejs.worker_env(env)
    env.update(
        EDGEFC_WORKER_SOCKET=WORKER_SOCKET,
        EDGEFC_WORKER_INSTANCE=spec.instance_id,
        EDGEFC_WORKER_KEY=spec.key,
        EDGEFC_WORKER_CODE=CODE_DIR,
    )
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    sysctl: dict[str, str] = {}
    if netns_path is not None:
        namespaces.append({"type": "network", "path": netns_path})
        sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    memory = spec.memory_mb * 1024 * 1024
    resources: dict[str, Any] = {
        "devices": rules,
        "memory": {"limit": memory, "swap": memory},
        "pids": {"limit": PIDS_LIMIT},
    }
    cpu = box.cpu
    if cpu:  # a CFS quota: ``cpu`` cores' worth of each period
        resources["cpu"] = {"quota": max(1000, int(cpu * CPU_PERIOD_US)), "period": CPU_PERIOD_US}
    linux: dict[str, Any] = {
        "cgroupsPath": cgroups_path,
        "namespaces": namespaces,
        "devices": devices,
        "sysctl": sysctl,
        "resources": resources,
        "maskedPaths": [] if box.privileged else list(MASKED_PATHS),
        "readonlyPaths": [] if box.privileged else list(READONLY_PATHS),
    }
    if not box.privileged:
        linux["seccomp"] = default_profile()
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": argv,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": CODE_DIR,
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
            "noNewPrivileges": not box.privileged,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }


def write_bundle(
    bundle: Path,
    spec: InstanceSpec,
    *,
    cgroups_path: str,
    netns_path: str | None,
    argv: list[str] | None = None,
) -> Path:
    """Write ``bundle/config.json`` and an empty ``bundle/rootfs`` (0755); raises ValidationError, OSError."""
    bundle.mkdir(mode=0o755, parents=True, exist_ok=True)
    rootfs = bundle / "rootfs"
    rootfs.mkdir(mode=0o755, exist_ok=True)
    for path in SYSTEM_DIRS:
        # Merged-/usr hosts: reproduce the /bin -> usr/bin links instead of mounting through them.
        if os.path.islink(path) and not os.path.lexists(rootfs / path[1:]):
            os.symlink(os.readlink(path), rootfs / path[1:])
    config = build_config(spec, bundle, cgroups_path=cgroups_path, netns_path=netns_path,
                          argv=argv or runtime_argv(spec))  # fmt: skip
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle
