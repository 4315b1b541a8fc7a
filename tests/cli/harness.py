"""Running the ``edgefc`` command as a user would: piped, or on a real pseudo-terminal of a given size."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.gateway_harness import EDGEFC, GatewayProcess


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without EDGEFC_* settings, NO_COLOR or a user config dir of the machine's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFC_", "NO_COLOR", "FORCE_COLOR", "COLUMNS"))}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str], input: bytes | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """``edgefc ARGS`` with stdin, stdout and stderr piped."""
    return subprocess.run([*EDGEFC, *args], env=env, input=input, capture_output=True, timeout=timeout, cwd=cwd)


def gw_env(gw: GatewayProcess, home: Path, **extra: str) -> dict[str, str]:
    """An environment that points the CLI at ``gw`` with its token."""
    return clean_env(home, EDGEFC_GATEWAY=gw.url, EDGEFC_TOKEN=gw.token, **extra)


def run_in_terminal(*args: str, env: dict[str, str], columns: int = 80, answer: bytes | None = None,
                    timeout: float = 30) -> tuple[int, str]:  # fmt: skip
    """``edgefc ARGS`` on a pseudo-terminal ``columns`` wide; ``answer`` is typed once output appears.

    Returns (exit code, everything written to the terminal).
    """
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([*EDGEFC, *args], env=env, stdin=follower, stdout=follower, stderr=follower,
                            close_fds=True, start_new_session=True)  # fmt: skip
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                out += chunk
                if answer is not None and b"?" in out:
                    os.write(leader, answer)
                    answer = None
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return code, out.decode("utf-8", errors="replace").replace("\r\n", "\n")


def write_project(root: Path, manifest: dict[str, Any], sources: dict[str, str]) -> Path:
    """A project folder: ``deployment.yaml`` and ``<name>/index.py`` per source; returns the manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        (root / name).mkdir(exist_ok=True)
        (root / name / "index.py").write_text(textwrap.dedent(source))
    path = root / "deployment.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


ECHO = "def handler(event, context):\n    return event\n"
