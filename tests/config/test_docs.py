"""The manifest and configuration references document exactly the fields the models have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from edgefc.config.gateway import GatewayConfig, env_name
from edgefc.config.manifest import ContainerSection, DeviceSpec, FunctionSpec, Manifest
from edgefc.config.routes import RouteSpec

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| `([^`]+)` \|(.*)$")


def tables(text: str, marker: str) -> dict[str, list[tuple[str, str]]]:
    """``{model name: [(field, rest of row), ...]}`` for each table under a ``<!-- marker: Name -->`` comment."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        start = re.match(rf"<!-- {marker}: (\w+) -->", line)
        if start:
            current = found.setdefault(start.group(1), [])
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := ROW.match(line)):
            current.append((row.group(1), row.group(2)))
    return found


@pytest.mark.parametrize("model", [Manifest, FunctionSpec, ContainerSection, RouteSpec, DeviceSpec])
def test_manifest_reference_matches_the_schema(model: type[BaseModel]) -> None:
    documented = tables((DOCS / "manifest.md").read_text(), "model")
    assert model.__name__ in documented, f"docs/manifest.md has no table for {model.__name__}"
    names = [name for name, _ in documented[model.__name__]]
    assert sorted(names) == sorted(model.model_fields), (
        f"undocumented: {sorted(set(model.model_fields) - set(names))}, "
        f"not in the schema: {sorted(set(names) - set(model.model_fields))}"
    )


def flattened(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys.extend(flattened(inner, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_configuration_reference_matches_the_settings() -> None:
    rows = tables((DOCS / "configuration.md").read_text(), "settings")["GatewayConfig"]
    assert sorted(key for key, _ in rows) == sorted(flattened(GatewayConfig))
    for key, rest in rows:
        assert f"`{env_name(*key.split('.'))}`" in rest, f"{key}: wrong or missing environment variable"
