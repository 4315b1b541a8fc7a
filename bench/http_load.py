"""Driving HTTP load from a separate process (``bench/loadgen.py``) and the uvicorn hello-world baseline.

Both the client and the baseline server run as their own processes, so neither shares an interpreter (or a
GIL) with the benchmark runner or with the server under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "loadgen.py"
HELLO_ASGI = HERE / "hello_asgi.py"


def run_loadgen(mode: str, url: str, *, headers: dict[str, str] | None = None, timeout: float = 120,
                **options: Any) -> dict[str, Any]:  # fmt: skip
    """Run one ``loadgen.py`` measurement and return its JSON; raises RuntimeError when the client fails."""
    args = [sys.executable, str(LOADGEN), mode, url]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    for name, value in (headers or {}).items():
        args += ["--header", f"{name}: {value}"]
    done = subprocess.run(args, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"load generator failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
        )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class HelloServer:
    """The baseline: ``hello_asgi.py`` (uvicorn, httptools, uvloop) in its own process; a context manager."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> HelloServer:
        self.proc = subprocess.Popen([sys.executable, str(HELLO_ASGI)], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError("the uvicorn hello-world baseline did not start")
        self.url = f"http://127.0.0.1:{int(line)}/"
        return self

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
