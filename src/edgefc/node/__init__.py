"""Node.js functions: where the Node.js worker lives, which ``node`` runs it, and how a sandbox starts it.

The worker itself is JavaScript (``worker.js`` and ``lib/`` next to this file, its npm dependencies in
``node_modules/`` installed by ``make install``); the SDK and the Link IoT Edge shims are in ``modules/``,
which the worker's ``NODE_PATH`` names, so ``require('linkedge-thing-access-sdk')`` resolves inside a function
unless the function ships its own copy.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.js"
MODULES = HERE / "modules"
DEPENDENCIES = HERE / "node_modules"

# The manifest's runtime names: the major version a function needs at least. Any Node.js >= 18 runs the worker.
RUNTIMES = {"nodejs18": 18, "nodejs20": 20, "nodejs22": 22}
MIN_MAJOR = 18
# Node itself needs ~40 MiB before any user code runs; below this a function could not start.
MIN_MEMORY_MB = 64
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64")


def is_node(runtime: str) -> bool:
    """Whether a manifest ``runtime`` is one of the Node.js ones."""
    return runtime in RUNTIMES


def find_node() -> str | None:
    """The ``node`` binary: ``EDGEFC_NODE`` if set, else the first on PATH or in the usual places; None if absent."""
    configured = os.environ.get("EDGEFC_NODE")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("node") or next(
        (p for p in ("/usr/bin/node", "/usr/local/bin/node") if os.access(p, os.X_OK)), None
    )
    return os.path.realpath(found) if found else None


@functools.lru_cache(maxsize=4)
def node_version(binary: str) -> tuple[int, int, int] | None:
    """``node --version`` of ``binary`` as numbers; None when it does not run. Cached per binary."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def heap_limit_mb(memory_mb: int) -> int:
    """V8's old-space limit for a function with ``memory_mb``.

    Set to the whole limit: V8 then sizes its heap and collects garbage for that budget, while the process's
    other memory (code, young generation, buffers) means the kernel limit (cgroup or RSS watchdog) is what ends
    a function that really runs out, reported as OutOfMemory as for Python.
    """
    return max(16, int(memory_mb))


def worker_argv(memory_mb: int, binary: str | None = None) -> list[str]:
    """The command line that starts the Node.js worker. Raises FileNotFoundError when node is not installed."""
    node = binary or find_node()
    if node is None:
        raise FileNotFoundError("node is not installed on this gateway (set EDGEFC_NODE or put node on PATH)")
    return [node, f"--max-old-space-size={heap_limit_mb(memory_mb)}", str(WORKER)]


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with NODE_PATH extended by the SDK modules (after the function's own NODE_PATH, if any)."""
    own = env.get("NODE_PATH")
    return {**env, "NODE_PATH": f"{own}{os.pathsep}{MODULES}" if own else str(MODULES)}


def runtime_dirs(binary: str | None = None) -> list[str]:
    """Host folders a container must see for node to run: its install prefix when outside the system dirs."""
    node = binary or find_node()
    if node is None:
        return []
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(node)))
    if prefix in ("", "/") or any(prefix == d or prefix.startswith(d + "/") for d in _SYSTEM_DIRS):
        return []
    return [prefix]



def scaffold_source(name: str) -> str:
    """The ``index.js`` that ``edgefc init --runtime nodejs20`` writes for function ``name``."""
    from edgefc.node.templates import TEMPLATES

    return TEMPLATES["on-demand"][0]["index.js"].format(name=name)
