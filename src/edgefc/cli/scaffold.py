"""``edgefc init``: a new function folder and its entry in deployment.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edgefc import node as nodejs
from edgefc.errors import ValidationError

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

TEMPLATE = '''"""{name}: an edgefc function."""

import json


def handler(event, context):
    """Called once per event; ``event`` is bytes, the return value is the result."""
    data = json.loads(event or b"{{}}")
    context.logger.info("hello from %s", context.function.name)
    return {{"hello": data.get("name", "world")}}
'''


def scaffold(directory: Path, name: str, mode: str = "on_demand", runtime: str = "python3") -> list[Path]:
    """Write ``functions/<name>/index.py`` (``index.js`` for Node.js) and add the function to ``deployment.yaml``.

    Raises ValidationError.
    """
    if not NAME.fullmatch(name):
        raise ValidationError([f"name: {name!r} must match [a-z0-9][a-z0-9-]{{0,62}}"])
    code_dir = directory / "functions" / name
    index = code_dir / ("index.py" if runtime == "python3" else "index.js")
    manifest = directory / "deployment.yaml"
    if index.exists():
        raise ValidationError([f"{index}: already exists; not overwriting it"])
    data: dict[str, Any] = {"functions": []}
    if manifest.exists():
        loaded = yaml.safe_load(manifest.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValidationError([f"{manifest}: is not a YAML mapping; cannot add a function to it"])
        data = loaded
        functions = data.setdefault("functions", []) or []
        if any(isinstance(f, dict) and f.get("name") == name for f in functions):
            raise ValidationError([f"{manifest}: already has a function named {name!r}"])
    runtime_key = {} if runtime == "python3" else {"runtime": runtime}
    entry = {"name": name, "code": f"./functions/{name}", "handler": "index.handler", **runtime_key, "mode": mode,
             "memory_mb": 128, "timeout_s": 3}  # fmt: skip
    functions = data.get("functions") or []
    assert isinstance(functions, list)
    functions.append(entry)
    data["functions"] = functions
    code_dir.mkdir(parents=True, exist_ok=True)
    index.write_text(TEMPLATE.format(name=name) if runtime == "python3" else nodejs.scaffold_source(name))
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return [index, manifest]
