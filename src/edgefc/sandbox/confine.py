"""Confining a process-sandbox worker: a private view of the file system, then an unprivileged user.

Runs in the fork server's child, as root, before any function code is imported (see
:mod:`edgefc.sandbox.forkserver`). The worker then

- sees the gateway's data dir, ``/root``, ``/home`` and the shared temporary directories as empty read-only
  ``tmpfs`` mounts, except for the few paths it needs bound back at their own place (its code, read-only; the
  worker socket; the Python install and the interpreter's ``sys.path``, read-only) — DESIGN §8: Python lives
  under ``/root/.pyenv`` and ``/root`` is mode 0700, so the install is bound back rather than ``/root`` opened;
- gets its own writable ``/tmp`` (a sized ``tmpfs``, gone with the instance);
- runs as a user id of its own (``WORKER_UID_BASE + slot``, one per live instance), so it cannot signal the
  gateway or another function nor read their ``/proc/<pid>/environ``; with no supplementary groups, an empty
  capability bounding set, ``no_new_privileges`` and a cap on its processes.

- last, gets the system-call filter of an unprivileged container (:mod:`edgefc.sandbox.seccomp`: no new
  namespaces, mounts, keyrings, ``bpf``, ``perf_event_open``, …), for the host's own architecture only.

What this does not protect (docs/security.md): the kernel beyond that filter (no user or pid namespace:
``/proc`` shows every process's command line), the network (the host's), and world-readable files outside the
hidden directories.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import stat
import sys
from collections.abc import Iterable
from typing import NamedTuple

from edgefc.sandbox import seccomp

WORKER_UID_BASE = 1_900_000_000  # far above login users and the usual subuid ranges; needs no passwd entry
MAX_PROCESSES = 512  # per worker user: threads count too; a fork bomb stops here
TMP_SIZE = "64m"
# Hidden from every worker whatever the data dir: home directories and the temporary dirs other processes share.
ALWAYS_HIDDEN = ("/root", "/home", "/tmp", "/var/tmp", "/dev/shm")

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
O_PATH = getattr(os, "O_PATH", 0o10000000)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class ConfineError(OSError):
    """A step of confining a worker failed (raised in the fork server's child, which then exits)."""


# For test suites whose functions write side files into the test's own directory: never set it in production.
UNCONFINED_ENV = "EDGEFC_UNCONFINED_WORKERS"


def available() -> tuple[bool, str]:
    """Whether workers can be confined here, with the reason when not (needs root for mounts and user ids)."""
    if os.environ.get(UNCONFINED_ENV) == "1":
        return False, f"{UNCONFINED_ENV}=1 is set (meant for test suites only)"
    if os.geteuid() != 0:
        return False, "the gateway does not run as root, so process workers run as its own user"
    return True, ""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ConfineError(err, f"{what}: {os.strerror(err)}")


def _enc(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = _enc
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


class View(NamedTuple):  # not a dataclass, nor pathlib below: the fork server imports this module (~3 MiB)
    """The mounts of a worker's view: directories replaced by tmpfs, and paths bound back inside them."""

    hidden: tuple[str, ...]  # outermost first; none inside another
    keep: tuple[str, ...]  # absolute, resolved; none inside another
    writable: tuple[str, ...]  # hidden dirs that are the worker's own scratch space (``/tmp``)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _outermost(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(_inside(p, o) for o in out):
            out.append(p)
    return out


@functools.cache
def python_paths() -> tuple[str, ...]:
    """What the interpreter needs to import more modules: its prefixes and every directory on ``sys.path``.

    Cached: the fork server computes it once, before its first fork, and every worker inherits the answer.
    """
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    found += [p for p in sys.path if p and os.path.isabs(p)]
    return tuple(dict.fromkeys(os.path.realpath(p) for p in found if os.path.exists(p)))


def _ancestors(path: str) -> list[str]:
    """The directories above an absolute ``path``, outermost first: ``/a/b/c`` → ``/``, ``/a``, ``/a/b``."""
    parts = path.strip("/").split("/")[:-1]
    if path.strip("/") == "":
        return []
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def plan_view(private: Iterable[str], keep: Iterable[str]) -> View:
    """The view hiding ``private`` (plus :data:`ALWAYS_HIDDEN`) while ``keep`` stays reachable at its place.

    A kept path whose ancestor others cannot traverse (mode without o+x) gets that ancestor hidden too, so the
    bind-back makes it reachable. A directory at or inside a kept path is never hidden.
    """
    keeps = _outermost(os.path.realpath(k) for k in keep if os.path.lexists(k))
    hide = [os.path.realpath(p) for p in (*ALWAYS_HIDDEN, *private) if os.path.isdir(p)]
    for k in keeps:
        for parent in _ancestors(k):
            try:
                if not os.stat(parent).st_mode & stat.S_IXOTH:
                    hide.append(str(parent))
                    break
            except OSError:
                break
    # Never hide a directory that a kept path lies above or at (it would hide the kept path's own content).
    hidden = [h for h in _outermost(hide) if h != "/" and not any(_inside(h, k) for k in keeps)]
    writable = tuple(h for h in hidden if h == "/tmp")
    return View(tuple(hidden), tuple(keeps), writable)


def apply_view(view: View) -> None:
    """Enter a new mount namespace and build ``view`` in it. Raises ConfineError."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount here reaches the host
    for top in view.hidden:
        inside = [k for k in view.keep if _inside(k, top)]
        fds = [os.open(k, O_PATH | os.O_CLOEXEC) for k in inside]  # before the tmpfs hides them
        try:
            own = top in view.writable
            _mount(
                "tmpfs",
                top,
                "tmpfs",
                MS_NOSUID | MS_NODEV,
                f"mode={'1777' if own else '0755'},size={TMP_SIZE if own else '1m'}",
            )
            for k, fd in zip(inside, fds, strict=True):
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(k, mode=0o755, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(k), mode=0o755, exist_ok=True)
                    os.close(os.open(k, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                _mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
            if not own:
                _mount(None, top, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755")
        finally:
            for fd in fds:
                os.close(fd)


def read_only(paths: Iterable[str]) -> None:
    """Make bind mounts read-only (after :func:`apply_view`). Raises ConfineError."""
    for p in paths:
        _mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (group too) with no groups, no capabilities, no way back. Raises ConfineError."""
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        cap = 0
        while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:  # until EINVAL past the last capability
            cap += 1
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # clears the permitted, effective and ambient capability sets
    except OSError as exc:
        raise ConfineError(exc.errno or 0, f"dropping privileges to uid {uid}: {exc.strerror}") from None


@functools.lru_cache(maxsize=256)
def plan(code_dir: str, socket_path: str, private: tuple[str, ...]) -> tuple[View, tuple[str, ...]]:
    """The view of a worker of ``code_dir`` and the bind mounts to make read-only in it.

    Cached by the fork server (it calls this before forking): the next cold start of the same code skips the
    file-system lookups. Code dirs are content-addressed, so a cached plan never goes stale.
    """
    view = plan_view(private, [code_dir, *python_paths(), socket_path])
    sock = os.path.realpath(socket_path)
    ro = tuple(k for k in view.keep if any(_inside(k, h) for h in view.hidden) and k != sock)
    return view, ro


def syscall_filter() -> seccomp.Filter:
    """The system-call filter of a process worker: the unprivileged container's, for this architecture only (a
    32-bit system call kills the worker; half the program, half the cost per cold start). Raises OSError."""
    return seccomp.Filter(seccomp.compile_filter({**seccomp.default_profile(), "architectures": []}))


def confine(*, uid: int, code_dir: str, socket_path: str, private: Iterable[str],
            syscalls: seccomp.Filter | None) -> None:  # fmt: skip
    """Everything above, in order, for one worker (``syscalls``: from :func:`syscall_filter`, made before the fork;
    None where libseccomp is missing). Raises ConfineError."""
    view, ro = plan(code_dir, socket_path, tuple(private))
    apply_view(view)
    read_only(ro)
    drop_privileges(uid)
    if syscalls is not None:
        try:
            syscalls.install()
        except OSError as exc:
            raise ConfineError(exc.errno or 0, exc.strerror or str(exc)) from None
