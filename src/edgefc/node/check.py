"""Deploy-time checks of a Node.js function: a node that can run it, enough memory, its handler file, syntax.

Called by :func:`edgefc.config.load.check_function_code` for ``runtime: nodejs*``; runs in the deploy's worker
thread (it may start ``node --check``), never on the event loop.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from edgefc.node import MIN_MAJOR, MIN_MEMORY_MB, RUNTIMES, find_node, node_version

_SUFFIXES = (".js", ".cjs", ".mjs")


def code_problems(spec: Any, code_dir: Path, *, path: str) -> list[str]:
    """Problems of Node.js function ``spec`` with its code in ``code_dir``, prefixed with ``path``; never raises."""
    problems: list[str] = []
    node = find_node()
    wanted = RUNTIMES.get(spec.runtime, MIN_MAJOR)
    if node is None:
        problems.append(f"{path}.runtime: {spec.runtime} needs Node.js >= {wanted}, and this gateway has no node "
                        f"(install nodejs, or set EDGEFC_NODE to its path)")  # fmt: skip
    else:
        version = node_version(node)
        if version is None:
            problems.append(f"{path}.runtime: {node} --version did not answer; this gateway cannot run {spec.runtime}")
        elif version[0] < max(wanted, MIN_MAJOR):
            shown = ".".join(map(str, version))
            problems.append(f"{path}.runtime: {spec.runtime} needs Node.js >= {max(wanted, MIN_MAJOR)}; this gateway "
                            f"has v{shown} ({node})")  # fmt: skip
    if spec.memory_mb < MIN_MEMORY_MB:
        problems.append(f"{path}.memory_mb: a Node.js function needs at least {MIN_MEMORY_MB} MB, got {spec.memory_mb}")
    for key, ref in (("handler", spec.handler), ("initializer", spec.initializer)):
        if ref is None:
            continue
        problem = _check_ref(ref, code_dir, node, key)
        if problem is not None:
            problems.append(f"{path}.{key}: {problem}")
    return problems


def _module_file(ref: str, code_dir: Path) -> tuple[Path | None, str]:
    module = ref.rpartition(".")[0].split(".")
    base = Path(*module)
    candidates = [base.with_name(base.name + s) for s in _SUFFIXES] + [base / "index.js"]
    found = next((c for c in candidates if (code_dir / c).is_file()), None)
    return found, base.as_posix()


def _check_ref(ref: str, code_dir: Path, node: str | None, key: str) -> str | None:
    found, shown = _module_file(ref, code_dir)
    if found is None:
        return f"{ref!r} needs the file {shown}.js in the function's code, which has no such file"
    if node is None or found.suffix == ".mjs":
        return None
    try:
        # --check parses without running: a syntax error is refused here, with its line, before anything changes.
        done = subprocess.run([node, "--check", str(code_dir / found)], capture_output=True, text=True, timeout=20,
                              check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{found.as_posix()}: node --check could not run ({exc})"
    if done.returncode == 0:
        return None
    return f"{found.as_posix()}: {_syntax_summary(done.stderr, code_dir)}"


def _syntax_summary(stderr: str, code_dir: Path) -> str:
    """``line N: SyntaxError: ...`` from node's report (first line is ``file:N``, the error a few lines below)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    where = lines[0].rsplit(":", 1)[-1] if lines else ""
    error = next((line.strip() for line in lines if "Error" in line and not line.lstrip().startswith("at ")), "")
    text = error or (lines[-1] if lines else "node --check failed")
    return f"line {where}: {text}" if where.isdigit() else text.replace(str(code_dir) + "/", "")
