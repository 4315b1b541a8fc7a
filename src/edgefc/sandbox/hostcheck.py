"""Deploy-time checks of a function's ``container`` section against this host: paths, devices, free ports.

The manifest schema checks shapes and counts; these check facts only the gateway's host can answer, so a
deployment that cannot run here is refused whole, before anything changes (CONTRACT §2).
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from edgefc.errors import ValidationError
from edgefc.sandbox.base import ContainerSpec
from edgefc.sandbox.bundle import CODE_DIR, WORKER_SOCKET, DeviceMapping, PortMapping, VolumeMapping

MAX_ENTRIES = 10
RESERVED_TARGETS = ("/proc", "/sys", "/dev", CODE_DIR, WORKER_SOCKET)


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def host_ports(spec: ContainerSpec) -> list[tuple[int, str]]:
    """The (host port, protocol) pairs ``spec`` maps, for finding duplicates across functions; unparsable skipped."""
    found = []
    for text in spec.ports:
        try:
            mapping = PortMapping.parse(text)
        except ValidationError:
            continue
        found.append((mapping.host, mapping.proto))
    return found


def port_free(port: int, proto: str) -> bool:
    """Whether ``port`` can be bound on all addresses right now (what portmap's DNAT will shadow)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def port_holder(port: int, proto: str = "tcp") -> str:
    """Who holds ``port`` on this host, as ``" (held by pid N: command line)"`` for an error message, or ``""``.

    Needs to see other processes' sockets (root does); never raises.
    """
    try:
        import psutil

        for conn in psutil.net_connections(kind=proto):
            if (
                conn.laddr
                and conn.laddr.port == port
                and conn.pid
                and (proto != "tcp" or conn.status == "LISTEN")
            ):
                try:
                    cmd = " ".join(psutil.Process(conn.pid).cmdline())[:200]
                except psutil.Error:
                    cmd = "?"
                return f" (held by pid {conn.pid}: {cmd})"
    except Exception:  # noqa: BLE001 — a hint for an error message must not cause another error
        pass
    return ""


def _check_ports(spec: ContainerSpec, path: str) -> list[str]:
    problems = []
    seen: set[tuple[int, str]] = set()
    for i, text in enumerate(spec.ports):
        where = f"{path}.ports[{i}]"
        try:
            mapping = PortMapping.parse(text)
        except ValidationError as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            continue
        key = (mapping.host, mapping.proto)
        if key in seen:
            problems.append(f"{where}: host port {mapping.host}/{mapping.proto} is mapped twice")
        seen.add(key)
        if mapping.host < 1024 and os.geteuid() != 0:
            problems.append(
                f"{where}: host port {mapping.host} is below 1024 and the gateway does not run as root"
            )
        elif not port_free(mapping.host, mapping.proto):
            problems.append(f"{where}: host port {mapping.host}/{mapping.proto} is already in use")
    if spec.host_network and spec.ports:
        problems.append(f"{path}.ports: not used with host_network (the function binds host ports itself)")
    return problems


def _check_devices(spec: ContainerSpec, path: str) -> list[str]:
    problems = []
    if spec.privileged and spec.devices:
        problems.append(
            f"{path}.devices: not allowed with privileged (a privileged container has every device)"
        )
    for i, text in enumerate(spec.devices):
        where = f"{path}.devices[{i}]"
        try:
            mapping = DeviceMapping.parse(text)
        except ValidationError as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            continue
        try:
            mode = os.stat(mapping.host).st_mode
        except OSError:
            problems.append(f"{where}: device {mapping.host} does not exist on this host")
            continue
        if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            problems.append(f"{where}: {mapping.host} is not a device node")
        elif not _inside(mapping.container, "/dev"):
            problems.append(f"{where}: the container path {mapping.container} must be under /dev")
    return problems


def _check_volumes(spec: ContainerSpec, path: str, data_dir: Path) -> list[str]:
    problems = []
    data = os.path.realpath(data_dir)
    for i, text in enumerate(spec.volumes):
        where = f"{path}.volumes[{i}]"
        try:
            mapping = VolumeMapping.parse(text)
        except ValidationError as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            continue
        source = os.path.realpath(mapping.source)
        if not os.path.exists(mapping.source):
            problems.append(f"{where}: source {mapping.source} does not exist on this host")
        elif _inside(source, data) or _inside(data, source):
            problems.append(f"{where}: source {mapping.source} overlaps the gateway's data dir")
        if mapping.target == "/":
            problems.append(f"{where}: target / would replace the container's root")
        for reserved in RESERVED_TARGETS:
            if _inside(mapping.target, reserved) or _inside(reserved, mapping.target):
                problems.append(f"{where}: target {mapping.target} would cover {reserved}")
                break
    return problems


def check_container_spec(spec: ContainerSpec, *, path: str, data_dir: Path) -> list[str]:
    """Every ``path.field: problem`` that keeps ``spec`` from running on this host; empty when it can run."""
    problems = []
    for field in ("ports", "devices", "volumes"):
        count = len(getattr(spec, field))
        if count > MAX_ENTRIES:
            problems.append(f"{path}.{field}: at most {MAX_ENTRIES} entries, got {count}")
    problems += _check_ports(spec, path)
    problems += _check_devices(spec, path)
    problems += _check_volumes(spec, path, data_dir)
    return problems
