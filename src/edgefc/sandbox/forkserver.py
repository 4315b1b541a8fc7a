"""The fork server: a process that has already imported the worker runtime and forks instances on request.

A fork costs ~2 ms where a fresh interpreter costs ~50 ms. The gateway talks to it over a socket pair with
the frames of :mod:`edgefc.worker.protocol`:

- gateway → server: ``spawn`` {req, instance, socket, code_dir, cgroup_procs, cgroup_procs_extra?, private?, exec?},
  then at once its secret part: a length-prefixed msgpack map {env, key} that the server keeps in one buffer and
  zeroes once it has forked (a worker is a fork of this process: it must not find earlier functions' secrets)
- server → gateway: ``spawned`` {req, pid} | ``spawn_error`` {req, message} | ``exit`` {pid, status}

The server is the parent of every worker, reaps them and reports each exit. It dies with the gateway
(PR_SET_PDEATHSIG), and its workers die with it. As root it confines each worker (:mod:`edgefc.sandbox.confine`)
under a user id of its own, ``WORKER_UID_BASE + pid`` (unique among live workers, no state to keep); a worker
inherits no file descriptor but its standard streams.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import signal
import socket
import sys
from typing import Any

# Imported here so that a forked worker finds them loaded: this is what makes cold starts cheap.
import msgpack

import edgefc.sdk  # noqa: F401
import edgefc.worker.main as worker_main
from edgefc.sandbox import confine, seccomp
from edgefc.worker.protocol import HEADER, MAX_FRAME, ProtocolError, encode, recv_frame, recv_into

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _private_dirs(req: dict[str, Any]) -> list[str]:
    """The gateway's private directories: as the request names them, else its data dir (the worker socket lies
    in ``<data dir>/run/``; a long data dir's socket lies in ``/tmp``, which is hidden anyway)."""
    given = req.get("private")
    if isinstance(given, list):
        return [str(p) for p in given]
    data_dir = os.path.dirname(os.path.dirname(os.path.abspath(req["socket"])))
    return [data_dir] if data_dir not in ("/", "") else []


def _recv_secret(ctrl: socket.socket) -> bytearray:
    """The secret part of a spawn request (its ``env`` and ``key``, msgpack), read straight into a buffer of its
    own, with no copy elsewhere in this process: :func:`_wipe` zeroes it once the child is forked, so a later
    worker, which is a fork of this process, finds no earlier function's environment or key in its memory."""
    header = bytearray(HEADER.size)
    recv_into(ctrl, header)
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"secret of {length} bytes exceeds {MAX_FRAME}")
    secret = bytearray(length)
    recv_into(ctrl, secret)
    return secret


def _wipe(secret: bytearray) -> None:
    secret[:] = bytes(len(secret))


def _child(req: dict[str, Any], secret: bytearray, server_pid: int, confined: bool,
           syscalls: seccomp.Filter | None) -> None:  # fmt: skip
    """Runs in the forked child: become the instance, then serve. Never returns."""
    code = 1
    try:
        private = msgpack.unpackb(secret, raw=False)
        _wipe(secret)
        req = {**req, "env": private["env"], "key": private["key"]}
        os.setsid()
        die_with_parent()
        if os.getppid() != server_pid:
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        # Only the standard streams go on: the control socket, the wake-up pipe and anything else that slipped
        # into the server (a listening socket of the gateway, say) must not reach function code.
        os.closerange(3, 1 << 20)
        for procs in [req.get("cgroup_procs"), *(req.get("cgroup_procs_extra") or [])]:
            if procs:  # the memory cgroup, and on cgroup v1 the cpu one when the function has a quota
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))
        if confined:
            confine.confine(uid=confine.WORKER_UID_BASE + os.getpid(), code_dir=req["code_dir"],
                            socket_path=req["socket"], private=_private_dirs(req), syscalls=syscalls)  # fmt: skip
            die_with_parent()  # a change of user clears the parent-death signal
            if os.getppid() != server_pid:
                os._exit(1)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["code_dir"])
        if req.get("exec"):  # another runtime's worker (Node.js): it reads its parameters from the environment
            os.environ.update(EDGEFC_WORKER_SOCKET=req["socket"], EDGEFC_WORKER_INSTANCE=req["instance"],
                              EDGEFC_WORKER_KEY=req["key"], EDGEFC_WORKER_CODE=req["code_dir"],
                              EDGEFC_WORKER_STDIO=_stdio_pipes())  # fmt: skip
            os.execve(req["exec"][0], req["exec"], os.environ)
        code = worker_main.run(req["socket"], req["instance"], req["key"], req["code_dir"])
    except BaseException as exc:  # noqa: BLE001 — anything here must end in _exit, never back in the server
        try:
            os.write(2, f"edgefc worker {req.get('instance')}: {exc!r}\n".encode())
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            worker_main.output.release_held()
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)


def _stdio_pipes() -> str:
    """Point fd 1 and 2 at pipes and return their read ends as "out,err" for an exec'd worker to read: what its
    subprocesses and native code write becomes log lines, as the Python worker's output.capture_fds does."""
    ends = []
    for fd in (1, 2):
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        os.set_inheritable(r, True)
        ends.append(str(r))
    return ",".join(ends)


def serve(ctrl: socket.socket) -> None:
    """Serve spawn requests on ``ctrl`` until it closes; report every child's exit."""
    die_with_parent()
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the gateway stops us by closing ctrl
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the gateway, which stops us in order
    sel = selectors.DefaultSelector()
    sel.register(ctrl, selectors.EVENT_READ, "ctrl")
    sel.register(r, selectors.EVENT_READ, "sig")
    me = os.getpid()
    confined, why = confine.available()
    if not confined:
        os.write(2, f"edgefc fork server: workers are NOT confined: {why}\n".encode())
    confine.python_paths()  # computed once here, inherited by every fork
    syscalls = None
    if confined:
        try:  # compiled once here; each fork only installs it
            syscalls = confine.syscall_filter()
        except OSError as exc:
            os.write(2, f"edgefc fork server: workers get NO system-call filter: {exc.strerror or exc}\n".encode())
    while True:
        for key, _ in sel.select():
            if key.data == "sig":
                try:
                    os.read(r, 4096)
                except BlockingIOError:
                    pass
                _reap(ctrl)
                continue
            try:
                req = recv_frame(ctrl)
                secret = _recv_secret(ctrl) if req.get("t") == "spawn" else bytearray()
            except (EOFError, OSError, ProtocolError):
                _kill_all_children()
                return
            if req.get("t") != "spawn":
                continue
            if confined:
                try:  # planned here, cached for the next fork of the same code; a failure shows in the child
                    confine.plan(req["code_dir"], req["socket"], tuple(_private_dirs(req)))
                except (OSError, KeyError, TypeError):
                    pass
            try:
                pid = os.fork()
            except OSError as exc:
                ctrl.sendall(encode({"t": "spawn_error", "req": req["req"], "message": str(exc)}))
                continue
            finally:
                if os.getpid() == me:
                    _wipe(secret)
            if pid == 0:
                _child(req, secret, me, confined, syscalls)
            ctrl.sendall(encode({"t": "spawned", "req": req["req"], "pid": pid}))
        _reap(ctrl)


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        ctrl.sendall(encode({"t": "exit", "pid": pid, "status": code}))


def _kill_all_children() -> None:
    # Each worker leads its own process group; our children are exactly those groups.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                os.killpg(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def main() -> None:
    fd = int(sys.argv[1])
    ctrl = socket.socket(fileno=fd)
    serve(ctrl)
    os._exit(0)


if __name__ == "__main__":
    main()
