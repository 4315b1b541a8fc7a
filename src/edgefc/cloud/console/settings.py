"""The assignment form: its fields, turning them into a function's settings, and checking them.

The check is the cloud's own :func:`~edgefc.cloud.validate.check_settings` (the gateway's manifest models), so
the form says exactly what the API and the gateway would say, next to the field it is about. The form only
converts text to values (numbers, JSON, ``KEY=value`` lines).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from edgefc.cloud.validate import check_settings
from edgefc.config.manifest import FunctionSpec, Isolation, Mode
from edgefc.errors import ValidationError

NUMBER_FIELDS = ("memory_mb", "timeout_s", "idle_timeout_s", "max_concurrency", "max_instances", "max_queue")
TEXT_FIELDS = ("mode", "isolation", "schedule")
JSON_FIELDS = ("config", "schedule_payload")
LIST_FIELDS = ("container.ports", "container.devices", "container.volumes")
BOOL_FIELDS = ("container.host_network", "container.privileged")
FIELDS = ("version", *TEXT_FIELDS[:2], *NUMBER_FIELDS, "schedule", *JSON_FIELDS, "env", *BOOL_FIELDS,
          *LIST_FIELDS)
DEFAULTS: dict[str, str] = {"mode": "on_demand", "isolation": "default", "memory_mb": "512", "timeout_s": "3",
                            "max_concurrency": "1", "max_instances": "1", "max_queue": "100"}


# The choices the form offers come from the manifest models, so a new runtime or mode shows up by itself.
RUNTIMES: tuple[str, ...] = tuple(str(v) for v in get_args(FunctionSpec.model_fields["runtime"].annotation))
MODES: tuple[str, ...] = tuple(m.value for m in Mode)
ISOLATIONS: tuple[str, ...] = tuple(i.value for i in Isolation)
_LABELS = {"python3": "Python 3", "nodejs20": "Node.js 20", "on_demand": "on_demand — instances per event",
           "continuous": "continuous — always one running", "default": "default (the gateway's setting)"}


def options(values: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(value, label)`` pairs for a select."""
    return [(value, _LABELS.get(value, value)) for value in values]


@dataclass
class Checked:
    """A form turned into settings, with problems by field name (``""`` for the form as a whole)."""

    settings: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def _number(text: str) -> int | float:
    value = float(text)  # ValueError for text that is not a number
    if not math.isfinite(value):
        raise ValueError(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def settings_from_form(form: Mapping[str, Any]) -> Checked:
    """Convert the form's text into the settings dict of CONTRACT §7 (``version`` and every function setting).

    Empty optional fields are left out (the gateway's default applies). Conversion problems are reported by
    field; nothing raises.
    """
    out = Checked(settings={})
    raw = {name: str(form.get(name) or "").strip() for name in FIELDS}
    if raw["version"]:
        try:
            out.settings["version"] = int(raw["version"])
        except ValueError:
            out.add("version", f"must be a version number, got {raw['version']!r}")
    for name in TEXT_FIELDS:
        if raw[name]:
            out.settings[name] = raw[name]
    for name in NUMBER_FIELDS:
        if raw[name]:
            try:
                out.settings[name] = _number(raw[name])
            except ValueError:
                out.add(name, f"must be a number, got {raw[name]!r}")
    for name in JSON_FIELDS:
        if raw[name]:
            try:
                out.settings[name] = json.loads(raw[name])
            except ValueError as exc:
                out.add(name, f"must be JSON: {exc}")
    env: dict[str, str] = {}
    for number, line in enumerate(raw["env"].splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            out.add("env", f"line {number}: write KEY=value, got {line.strip()!r}")
        else:
            env[key.strip()] = value
    if env:
        out.settings["env"] = env
    container: dict[str, Any] = {}
    for name in BOOL_FIELDS:
        if raw[name] in ("on", "true", "1"):
            container[name.split(".", 1)[1]] = True
    for name in LIST_FIELDS:
        items = [line.strip() for line in raw[name].splitlines() if line.strip()]
        if items:
            container[name.split(".", 1)[1]] = items
    if container:
        out.settings["container"] = container
    return out


def form_from_settings(settings: Mapping[str, Any] | None) -> dict[str, str]:
    """The form's text for stored settings (the inverse of :func:`settings_from_form`)."""
    if not settings:
        return dict(DEFAULTS)
    values: dict[str, str] = {}
    for name in ("version", *TEXT_FIELDS, *NUMBER_FIELDS):
        value = settings.get(name)
        if value is not None:
            # The cloud stores seconds as floats; 3.0 reads better as the 3 the user typed.
            values[name] = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    for name in JSON_FIELDS:
        if settings.get(name) is not None:
            values[name] = json.dumps(settings[name])
    values["env"] = "\n".join(f"{k}={v}" for k, v in (settings.get("env") or {}).items())
    container = settings.get("container") or {}
    for name in BOOL_FIELDS:
        values[name] = "on" if container.get(name.split(".", 1)[1]) else ""
    for name in LIST_FIELDS:
        values[name] = "\n".join(container.get(name.split(".", 1)[1]) or [])
    return values


def field_of(path: str) -> str:
    """The form field a problem path is about: ``functions[0].container.ports[2]`` → ``container.ports``."""
    parts = [p.split("[", 1)[0] for p in path.split(".") if p and not p.startswith("functions[")]
    parts = [p for p in parts if p]
    if len(parts) >= 2 and parts[0] == "container":
        name = f"container.{parts[1]}"
        return name if name in FIELDS else "container"
    if parts and parts[0] in FIELDS:
        return parts[0]
    return ""


def check(form: Mapping[str, Any], function: Mapping[str, Any]) -> Checked:
    """Convert the form and check it with the cloud's own assignment check (the gateway's models).

    ``function`` is the cloud's function record (``name``, ``runtime``, ``handler``, ``initializer``).
    Never raises.
    """
    out = settings_from_form(form)
    settings = {k: v for k, v in out.settings.items() if k != "version"}
    try:
        check_settings(dict(function), settings)
    except ValidationError as exc:
        for name, messages in errors_from_problems(exc.problems).items():
            if name in out.errors and name != "env":
                continue  # the conversion already said what is wrong with this field's text
            for message in messages:
                out.add(name, message)
    return out


def errors_from_problems(problems: list[str]) -> dict[str, list[str]]:
    """The API's ``path: message`` lines (a refused save) sorted to the fields they name."""
    errors: dict[str, list[str]] = {}
    for line in problems:
        path, sep, message = line.partition(": ")
        name = field_of(path) if sep else ""
        # Keep what the path says beyond the field (env.KEY, ports[2]) in front of the message.
        rest = path.removeprefix(name).lstrip(".") if name and path.startswith(name) else ""
        text = (f"{rest}: {message}" if rest else message) if sep and name else line
        errors.setdefault(name, []).append(text)
    return errors
