"""Reading a deployment manifest from YAML or a dict, and checking function code without importing it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from edgefc.config.fields import Loc
from edgefc.config.manifest import CrossProblems, FunctionSpec, Manifest, cross_problems
from edgefc.config.problems import format_loc, translate
from edgefc.config.yamltext import load_yaml
from edgefc.errors import ValidationError

MAX_DEPTH = 64
# A gateway runs what fits on it; thousands of functions would start hundreds of processes at once.
MAX_ENTRIES = {"functions": 1000, "routes": 10_000, "devices": 10_000}


def parse_manifest(text: str | bytes, *, source: str = "deployment.yaml") -> Manifest:
    """Parse and validate a manifest given as YAML text.

    Raises ValidationError listing every problem as ``path: message`` (``source`` names the file).
    """
    try:
        data = load_yaml(text, source=source)
    except ValueError as exc:
        raise ValidationError([str(exc)]) from None
    if data is None:
        data = {}
    return _validate(data, source)


def manifest_from_dict(data: dict[str, Any], *, source: str = "manifest") -> Manifest:
    """Validate a manifest already parsed into a dict (the cloud agent, the API's JSON).

    Raises ValidationError listing every problem as ``path: message``.
    """
    return _validate(data, source)


def _validate(data: Any, source: str) -> Manifest:
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"{type(data).__name__!s}"
        raise ValidationError(
            [f"{source}: the manifest must be a mapping with functions, routes and devices, got {kind}"]
        )
    # Caps before validation, so that validating costs little whatever arrives (YAML, the API's JSON, the cloud).
    too_deep = _deeper_than(data, MAX_DEPTH)
    if too_deep is not None:
        raise ValidationError(
            [f"{format_loc(too_deep[:4]) or source}…: nested deeper than {MAX_DEPTH} levels"]
        )
    caps = [f"{key}: at most {cap} entries, got {len(data[key])}" for key, cap in MAX_ENTRIES.items()
            if isinstance(data.get(key), list) and len(data[key]) > cap]  # fmt: skip
    if caps:
        raise ValidationError(caps)
    problems: list[tuple[Loc, str]] = []
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(data)
    except PydanticValidationError as exc:
        # Cross-entry problems are reported from the raw data below, whether or not the entries validated.
        problems.extend(translate(exc, Manifest, skip=CrossProblems))
    problems.extend(cross_problems(data))
    if problems or manifest is None:
        raise ValidationError(_lines(problems, source))
    return manifest


def _deeper_than(data: Any, limit: int) -> Loc | None:
    """The path of a value nested deeper than ``limit`` in plain data, or None (iterative: no recursion)."""
    stack: list[tuple[Any, Loc]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > limit:
            return loc
        if isinstance(value, dict):
            stack.extend((v, (*loc, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    return None


def _lines(problems: list[tuple[Loc, str]], source: str) -> list[str]:
    ordered = sorted(dict.fromkeys(problems), key=lambda item: _sort_key(item[0]))
    return [f"{format_loc(loc) or source}: {message}" for loc, message in ordered]


def _sort_key(loc: Loc) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in loc)


def check_function_code(spec: FunctionSpec, code_dir: Path, *, path: str) -> list[str]:
    """Check, without importing it, that the bundle defines the handler (and initializer) at module level.

    Returns problem lines prefixed with ``path`` (e.g. ``functions[1].handler: ...``); never raises for bad code.
    """
    if spec.runtime != "python3":
        from edgefc.node.check import code_problems

        return code_problems(spec, code_dir, path=path)
    problems: list[str] = []
    for key, ref in (("handler", spec.handler), ("initializer", spec.initializer)):
        if ref is None:
            continue
        problem = _check_ref(ref, code_dir, key)
        if problem is not None:
            problems.append(f"{path}.{key}: {problem}")
    return problems


def _check_ref(ref: str, code_dir: Path, key: str) -> str | None:
    *module, func = ref.split(".")
    candidates = [Path(*module).with_suffix(".py"), Path(*module, "__init__.py")]
    found = next((c for c in candidates if (code_dir / c).is_file()), None)
    if found is None:
        return (
            f"{ref!r} needs the file {candidates[0].as_posix()} in the function's code, "
            f"which has no such file"
        )
    try:
        tree = ast.parse((code_dir / found).read_bytes(), filename=found.as_posix())
    except SyntaxError as exc:
        return f"{found.as_posix()}:{exc.lineno or 0}: syntax error: {exc.msg}"
    except (ValueError, OSError) as exc:
        return f"{found.as_posix()}: cannot be read as Python source ({exc})"
    bound, star_import = _top_level_names(tree.body)
    kind = bound.get(func)
    if kind == "async":
        return f"{found.as_posix()}: {func} is 'async def'; the {key} must be a plain 'def {func}(...)'"
    if kind is None and not star_import:
        defined = sorted(name for name, k in bound.items() if k == "def")
        hint = f" (functions there: {', '.join(defined[:8])})" if defined else ""
        return f"{found.as_posix()} defines no top-level function {func!r}{hint}"
    return None


def _top_level_names(body: list[ast.stmt]) -> tuple[dict[str, str], bool]:
    """Names a module binds at import time: defs, classes, assignments, imports (also inside if/try/with)."""
    bound: dict[str, str] = {}
    star = False
    for node in body:
        if isinstance(node, ast.FunctionDef):
            bound[node.name] = "def"
        elif isinstance(node, ast.AsyncFunctionDef):
            bound[node.name] = "async"
        elif isinstance(node, ast.ClassDef):
            bound[node.name] = "other"
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        bound[sub.id] = "other"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    bound[alias.asname or alias.name.split(".")[0]] = "other"
        else:
            for block in _blocks(node):
                inner, inner_star = _top_level_names(block)
                for name, kind in inner.items():
                    bound.setdefault(name, kind)
                star = star or inner_star
    return bound, star


def _blocks(node: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(node, ast.If | ast.For | ast.While):
        return [node.body, node.orelse]
    if isinstance(node, ast.With):
        return [node.body]
    if isinstance(node, ast.Try | ast.TryStar):
        return [node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]]
    return []
