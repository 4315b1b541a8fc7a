"""Turn pydantic's validation errors into the ``path: message`` lines users read.

pydantic's wording ("Input should be a valid integer", links to errors.pydantic.dev) is for programmers;
these lines are for someone fixing a YAML file on a factory floor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from edgefc.config.fields import Loc, Problems, describe

# Parts pydantic adds to a location (a bad dict key, validator chains); they mean nothing to a user.
_NOISE_PREFIXES = ("[key]", "function-after[", "function-before[", "function-wrap[", "function-plain[")


def format_loc(loc: Iterable[str | int]) -> str:
    """``('functions', 2, 'env')`` → ``functions[2].env``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def translate(
    exc: PydanticValidationError, model: type[BaseModel], *, skip: type[Exception] | None = None
) -> list[tuple[Loc, str]]:
    """Every error of ``exc`` as ``(location, message)``; errors caused by ``skip`` exceptions are dropped."""
    out: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(part for part in error["loc"] if not _is_noise(part))
        kind = error["type"]
        ctx = error.get("ctx") or {}
        cause = ctx.get("error")
        if skip is not None and isinstance(cause, skip):
            continue
        if isinstance(cause, Problems):
            out.extend(((*loc, *sub), message) for sub, message in cause.items)
        elif kind == "extra_forbidden":
            out.append((loc[:-1], f"unknown key {loc[-1]!r}{_suggest(model, loc)}"))
        elif kind == "missing":
            out.append((loc[:-1], f"missing required key {loc[-1]!r}"))
        else:
            out.append((loc, _message(kind, error, cause)))
    return out


def _is_noise(part: str | int) -> bool:
    return isinstance(part, str) and part.startswith(_NOISE_PREFIXES)


def _message(kind: str, error: Any, cause: Any) -> str:
    value = error.get("input")
    if isinstance(cause, ValueError):
        return str(cause)
    ctx = error.get("ctx") or {}
    if kind in ("enum", "literal_error"):
        return f"must be {ctx.get('expected', 'one of the allowed values')}, got {describe(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (key: value), got {describe(value)}"
    if kind == "list_type":
        return f"must be a list, got {describe(value)}"
    if kind in ("string_type", "str_type"):
        return f"must be a string, got {describe(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {describe(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {describe(value)}"
    if kind in _COMPARISONS:
        return f"must be {_COMPARISONS[kind]} {ctx.get(_bound_key(kind))}, got {describe(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {describe(value)}"
    return f"{error.get('msg', 'invalid value')}, got {describe(value)}"


_COMPARISONS = {
    "greater_than": "more than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}


def _bound_key(kind: str) -> str:
    """The ctx key pydantic uses for a comparison error's bound (``greater_than_equal`` → ``ge``)."""
    return {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}[kind]


def _suggest(model: type[BaseModel], loc: Loc) -> str:
    """`` (did you mean 'memory_mb'?)`` when an unknown key is a near miss of a field at that place."""
    fields = _fields_at(model, loc[:-1])
    import difflib  # only when a key is misspelt: the idle gateway need not hold it

    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = _inner_model(field.annotation)
        if current is None:
            return []
    return list(current.model_fields) if _is_model(current) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``list[M]``, ``M | None``, ``Annotated[list[M], ...]``."""
    if _is_model(annotation):
        return annotation  # type: ignore[no-any-return]
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _inner_model(origin) if origin is not None and origin is not annotation else None


# ``functions[7]`` at the start of a problem line, not already followed by its name.
_ENTRY_PATH = re.compile(r"^(functions|routes|devices)\[(\d+)\](?! \()")


def label_paths(lines: Iterable[str], data: Any) -> list[str]:
    """Name the entry each problem is about: ``functions[7].memory_mb: …`` → ``functions[7] (climate).memory_mb: …``.

    ``data`` is the manifest as parsed YAML (possibly invalid); entries without a usable name stay as they are.
    Never raises.
    """
    return [_ENTRY_PATH.sub(lambda m: _labelled(m, data), line) for line in lines]


def _labelled(match: re.Match[str], data: Any) -> str:
    key, index = match.group(1), int(match.group(2))
    entries = data.get(key) if isinstance(data, dict) else None
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
    if not isinstance(entry, dict):
        return match.group(0)
    if key == "devices":
        pk, dn = entry.get("product_key"), entry.get("device_name")
        name = f"/{pk}/{dn}" if isinstance(pk, str) and isinstance(dn, str) else None
    else:
        name = entry.get("name")
    return f"{match.group(0)} ({name})" if isinstance(name, str) and name else match.group(0)
