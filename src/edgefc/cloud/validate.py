"""Cloud input checked with the gateway's own models, so the cloud never sends what a gateway refuses.

Problems are reported as the gateway words them, with the path rewritten to what the cloud user sent
(``memory_mb: must be at most 16384, got 99999`` for an assignment, ``routes[1].target: …`` for routes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgefc.config.gateway import LimitsConfig
from edgefc.config.load import check_function_code, manifest_from_dict
from edgefc.config.manifest import FunctionSpec
from edgefc.errors import ValidationError
from edgefc.package import BundleStore

FUNCTION_KEYS = ("name", "runtime", "handler", "initializer")  # a function's own; the rest are per assignment
_LIMITS = LimitsConfig()
MAX_BUNDLE_BYTES = _LIMITS.max_bundle_bytes  # the gateway's default caps: what it accepts, the cloud accepts
MAX_BUNDLE_FILES = _LIMITS.max_bundle_files


def _strip(problems: list[str], prefix: str, into: str = "") -> list[str]:
    return [into + p[len(prefix):] if p.startswith(prefix) else p for p in problems]


def check_function(data: dict[str, Any]) -> FunctionSpec:
    """A function's ``name``, ``runtime``, ``handler``, ``initializer``; raises ValidationError naming the key."""
    extra = sorted(set(data) - set(FUNCTION_KEYS))
    if extra:
        raise ValidationError([f"{key}: unknown key (a function has {', '.join(FUNCTION_KEYS)}; the other "
                               "settings belong to an assignment)" for key in extra])  # fmt: skip
    entry = {k: v for k, v in data.items() if v is not None}
    try:
        return manifest_from_dict({"functions": [entry]}, source="function").functions[0]
    except ValidationError as exc:
        raise ValidationError(_strip(exc.problems, "functions[0].")) from None


def function_entry(function: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of ``function`` with an assignment's ``settings`` (code travels by hash, not path)."""
    entry = {"name": function["name"], "runtime": function["runtime"], "handler": function["handler"]}
    if function.get("initializer"):
        entry["initializer"] = function["initializer"]
    return {**entry, **settings}


def check_settings(function: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """An assignment's settings, checked as the gateway checks a manifest entry; returns them normalised to JSON.

    Raises ValidationError naming each bad field (``timeout_s: …``).
    """
    owned = sorted(set(settings) & {*FUNCTION_KEYS, "code"})
    if owned:
        raise ValidationError([f"{key}: set on the function, not in an assignment" for key in owned])
    try:
        spec = manifest_from_dict({"functions": [function_entry(function, settings)]}).functions[0]
    except ValidationError as exc:
        raise ValidationError(_strip(exc.problems, "functions[0].")) from None
    given = set(settings)
    return {k: v for k, v in spec.model_dump(mode="json", exclude_none=True).items() if k in given}


def check_manifest(manifest: dict[str, Any], *, source: str) -> None:
    """A whole deployment as the gateway will check it. Raises ValidationError listing every problem."""
    manifest_from_dict(manifest, source=source)


def check_list(key: str, items: Any, functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``routes`` or ``devices`` of an instance, checked against its assigned functions; returns them as JSON.

    Raises ValidationError (``routes[0].target: no function named 'x' in this manifest``).
    """
    if not isinstance(items, list):
        raise ValidationError([f"{key}: must be a list, got {type(items).__name__}"])
    manifest = manifest_from_dict({"functions": functions, key: items}, source=key)
    return [item.model_dump(mode="json", exclude_none=True) for item in getattr(manifest, key)]


def check_bundle(data: bytes, spec: FunctionSpec, *, label: str) -> None:
    """The gateway's bundle checks (zip-slip, links, bombs, caps) and that the handler is defined in the code.

    Raises ValidationError naming ``label`` and what is wrong.
    """
    with tempfile.TemporaryDirectory(prefix="edgefc-cloud-check-") as tmp:
        store = BundleStore(Path(tmp))
        sha = store.put(data, label=label, max_bytes=MAX_BUNDLE_BYTES, max_files=MAX_BUNDLE_FILES)
        problems = check_function_code(spec, store.path(sha), path=label)
        store.gc(set())
    if problems:
        raise ValidationError(problems)
