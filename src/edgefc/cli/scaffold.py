"""``edgefc init``: a new function folder from a template, and its entry added to deployment.yaml.

The manifest is the user's file: its comments, quoting and layout stay exactly as written. The new entry is
inserted as text at the end of the ``functions`` list (found through PyYAML's node positions), and the result
is parsed again to prove that it says what it said before plus the one new function.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edgefc.cli.templates import RUNTIMES, Template
from edgefc.errors import ValidationError


def scaffold(directory: Path, name: str, template: str = "on-demand", runtime: str = "python3") -> list[Path]:
    """Write ``functions/<name>/`` from ``template`` and add the function to ``deployment.yaml``.

    Raises ValidationError (and writes nothing) for a bad name, an existing folder or function of that name,
    or a manifest it cannot add to.
    """
    from edgefc.config.fields import NAME_PATTERN  # the manifest's own rule for names

    chosen = _template(runtime, template)
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValidationError([f"name: {name!r} must match {NAME_PATTERN}"])
    code_dir = directory / "functions" / name
    manifest = directory / "deployment.yaml"
    existing = [code_dir / f for f in chosen.files if (code_dir / f).exists()]
    if existing:
        raise ValidationError([f"{existing[0]}: already exists; not overwriting it"])
    entry = {"name": name, "code": f"./functions/{name}", "handler": "index.handler", **chosen.settings}
    if runtime != "python3":
        entry["runtime"] = runtime
    text = manifest.read_text("utf-8") if manifest.exists() else ""
    new_text = add_function(text, entry, source=str(manifest))
    code_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, body in chosen.files.items():
        (code_dir / filename).write_text(body.format(name=name))
        written.append(code_dir / filename)
    manifest.write_text(new_text)
    return [*written, manifest]


def next_step(name: str, template: str = "on-demand", runtime: str = "python3") -> str:
    """What to try after deploying a function made from ``template``."""
    return _template(runtime, template).next_step.format(name=name)


def _template(runtime: str, template: str) -> Template:
    templates = RUNTIMES.get(runtime)
    if templates is None:
        raise ValidationError([f"runtime: {runtime!r} is not one of {', '.join(RUNTIMES)}"])
    if template not in templates:
        raise ValidationError([f"template: {template!r} is not one of {', '.join(templates)}"])
    return templates[template]


def add_function(text: str, entry: dict[str, Any], *, source: str) -> str:
    """``text`` with ``entry`` appended to its ``functions`` list, every other character kept.

    Raises ValidationError when the text is not a YAML mapping, already has the name, or cannot be edited safely.
    """
    try:
        before = yaml.safe_load(text) if text.strip() else {}
        root = yaml.compose(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ValidationError([f"{source}: invalid YAML, fix it first: {exc}"]) from None
    if before is None:
        before = {}
    if not isinstance(before, dict) or (root is not None and not isinstance(root, yaml.MappingNode)):
        raise ValidationError([f"{source}: is not a YAML mapping; cannot add a function to it"])
    functions = before.get("functions") or []
    if not isinstance(functions, list):
        raise ValidationError([f"{source}: functions must be a list to add a function to it"])
    if any(isinstance(f, dict) and f.get("name") == entry["name"] for f in functions):
        raise ValidationError([f"{source}: already has a function named {entry['name']!r}"])
    value = _functions_node(root)
    if value is None:  # no functions key: a new block at the end
        new = text + ("" if not text or text.endswith("\n") else "\n") + "functions:\n" + _block(entry, 2)
    elif isinstance(value, yaml.SequenceNode) and value.value and not value.flow_style:
        last = value.value[-1]
        dash = _dash_column(text, value.value[0])
        at = _line_end(text, _last_end(last))
        new = text[:at] + _block(entry, dash) + text[at:]
    elif isinstance(value, yaml.SequenceNode) and value.flow_style and value.value:
        close = text.rindex("]", 0, value.end_mark.index)
        new = text[:close] + ", " + _flow(entry) + text[close:]
    else:  # "functions:" with nothing, or "functions: []"
        new = text[: value.start_mark.index].rstrip(" ") + "\n" + _block(entry, 2) + text[value.end_mark.index:].lstrip(" \n")
    after = yaml.safe_load(new)
    if not isinstance(after, dict) or after.get("functions") != [*functions, entry] or {
        k: v for k, v in after.items() if k != "functions"
    } != {k: v for k, v in before.items() if k != "functions"}:
        raise ValidationError([f"{source}: could not add {entry['name']!r} without changing the rest of the file; "
                               "add this entry to functions by hand:\n" + _block(entry, 2)])  # fmt: skip
    return new


def _functions_node(root: yaml.Node | None) -> yaml.Node | None:
    if not isinstance(root, yaml.MappingNode):
        return None
    return next((value for key, value in root.value if isinstance(key, yaml.ScalarNode) and key.value == "functions"),
                None)  # fmt: skip


def _dash_column(text: str, first_item: yaml.Node) -> int:
    """The column of the ``-`` that starts the first list item (items keep the file's own indentation)."""
    line_start = text.rfind("\n", 0, first_item.start_mark.index) + 1
    dash = text.rfind("-", line_start, first_item.start_mark.index)
    return dash - line_start if dash >= 0 else max(first_item.start_mark.column - 2, 0)


def _last_end(node: yaml.Node) -> int:
    """Where the last value inside ``node`` ends (a block's own end mark lies past following comments)."""
    if isinstance(node, yaml.MappingNode) and node.value and not node.flow_style:
        return _last_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        return _last_end(node.value[-1])
    return int(node.end_mark.index)


def _line_end(text: str, index: int) -> int:
    """The index just after the line holding ``index - 1`` (an item's end mark may sit at the next line's start)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _block(entry: dict[str, Any], dash: int) -> str:
    body = yaml.safe_dump(entry, sort_keys=False, default_flow_style=False, allow_unicode=True).splitlines()
    pad = " " * dash
    lines = [f"{pad}- {body[0]}"] + [f"{pad}  {line}" for line in body[1:]]
    return "\n".join(lines) + "\n"


def _flow(entry: dict[str, Any]) -> str:
    return yaml.safe_dump(entry, sort_keys=False, default_flow_style=True, width=10_000).strip()
