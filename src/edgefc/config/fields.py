"""Field types shared by the manifest models: names, bounded numbers, env maps, JSON values.

Each type validates with a message written for the person who wrote the YAML ("must be between 16 and
16384, got 0"), never pydantic's generic wording; :mod:`edgefc.config.load` turns them into ``path: message``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

Loc = tuple[str | int, ...]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}"  # capitals and "_" as Link IoT Edge names allow (HelloThing)
HANDLER_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+"
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
MAX_ENV = 10

NAME_RE = re.compile(NAME_PATTERN)
_HANDLER = re.compile(HANDLER_PATTERN)
_ENV_NAME = re.compile(ENV_NAME_PATTERN)


class Problems(ValueError):
    """Several problems found by one validator, each at a location relative to the validated value."""

    def __init__(self, items: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(message for _, message in items))
        self.items = items


def describe(value: Any) -> str:
    """A short rendering of a YAML value for error messages: ``'abc' (string)``, ``true (boolean)``."""
    kind = yaml_type(value)
    if isinstance(value, str):
        text = repr(value if len(value) <= 40 else value[:37] + "...")
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        return "null"
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        return f"a {kind}"
    return f"{text} ({kind})"


def yaml_type(value: Any) -> str:
    """The YAML word for a Python value's type (mapping, list, string, integer, number, boolean, null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _between(lo: float, hi: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not lo <= value <= hi or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"must be between {_num(lo)} and {_num(hi)}, got {_num(value)}")
        return value

    return check


def _positive_at_most(hi: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not 0 < value <= hi or not math.isfinite(value):
            raise ValueError(f"must be more than 0 and at most {_num(hi)}, got {_num(value)}")
        return value

    return check


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _strict_int(value: Any) -> Any:
    # YAML gives real ints; "512" or true here is almost always a mistake worth pointing at.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, got {describe(value)}")
    return value


def _strict_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {describe(value)}")
    return float(value)


def require_str(value: Any) -> Any:
    """Refuse anything but a string (YAML numbers and booleans included). Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {describe(value)}")
    return value


def _strict_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {describe(value)}")
    return value


def bounded_int(lo: int, hi: int) -> Any:
    """An integer field in ``lo..hi`` (bools and numeric strings refused)."""
    return Annotated[int, BeforeValidator(_strict_int), AfterValidator(_between(lo, hi))]


def seconds(hi: float) -> Any:
    """A positive duration in seconds (int or float), at most ``hi``."""
    return Annotated[float, BeforeValidator(_strict_number), AfterValidator(_positive_at_most(hi))]


def patterned(pattern: re.Pattern[str], what: str) -> Callable[[Any], Any]:
    """A check that a string matches ``pattern`` whole, failing with ``what`` as the expected form."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{describe(value)} is not a valid {what}")
        return value

    return check


StrictStr = Annotated[str, BeforeValidator(require_str)]
StrictBool = Annotated[bool, BeforeValidator(_strict_bool)]
Name = Annotated[
    str,
    BeforeValidator(require_str),
    AfterValidator(patterned(NAME_RE, "name (letters, digits, '-' and '_', 1-63 characters, "
                             "starting with a letter or digit)")),
]
HandlerRef = Annotated[
    str,
    BeforeValidator(require_str),
    AfterValidator(patterned(_HANDLER, "handler; write file.function, e.g. index.handler")),
]


def _json_value(value: Any, loc: Loc, out: list[tuple[Loc, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                out.append((loc, f"keys must be strings, got {describe(key)}"))
            else:
                _json_value(item, (*loc, key), out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_value(item, (*loc, index), out)
    elif isinstance(value, float) and not math.isfinite(value):
        out.append((loc, f"must be a finite number, got {value!r}"))
    elif not (value is None or isinstance(value, str | int | float | bool)):
        out.append((loc, f"must be JSON (mapping, list, string, number, boolean, null), got {yaml_type(value)}"))


def _check_json(value: Any) -> Any:
    problems: list[tuple[Loc, str]] = []
    _json_value(value, (), problems)
    if problems:
        raise Problems(problems)
    return value


Json = Annotated[Any, AfterValidator(_check_json)]


def _check_env(value: Any) -> dict[str, str]:
    """Env names must be usable by a shell; integers become strings, other non-strings are refused."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of NAME: value, got {describe(value)}")
    problems: list[tuple[Loc, str]] = []
    if len(value) > MAX_ENV:
        problems.append(((), f"at most {MAX_ENV} variables, got {len(value)}"))
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.append(((str(key),), "not a valid variable name (letters, digits and '_', not starting "
                                           "with a digit)"))
            continue
        if key == "FUNCTION_NAME" or key.upper().startswith("EDGEFC_"):
            problems.append(((key,), "reserved: the gateway sets FUNCTION_NAME and EDGEFC_* itself"))
            continue
        if isinstance(item, str) and "\x00" in item:
            problems.append(((key,), "contains a NUL character, which no environment variable can hold"))
        elif isinstance(item, str):
            result[key] = item
        elif isinstance(item, int) and not isinstance(item, bool):
            result[key] = str(item)
        else:
            hint = " (write it in quotes so YAML keeps it as text)" if item is not None else ""
            problems.append(((key,), f"must be a string, got {describe(item)}{hint}"))
    if problems:
        raise Problems(problems)
    return result


EnvMap = Annotated[dict[str, str], BeforeValidator(_check_env)]


def _empty_list_for_null(value: Any) -> Any:
    # "functions:" with nothing under it is YAML null; it plainly means "none".
    return [] if value is None else value


NullAsEmpty = BeforeValidator(_empty_list_for_null)
