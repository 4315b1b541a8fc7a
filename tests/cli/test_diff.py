"""The deploy diff: what is added, changed (and which settings), removed, per kind of entry."""

from __future__ import annotations

from edgefc.cli.diff import diff
from edgefc.config.load import manifest_from_dict


def _manifest(functions: list[dict], devices: list[dict] | None = None) -> object:  # type: ignore[type-arg]
    return manifest_from_dict({"functions": [{"handler": "index.handler", **f} for f in functions],
                               "devices": devices or []})  # fmt: skip


def test_added_changed_removed_and_unchanged() -> None:
    drv = {"name": "drv", "mode": "continuous"}
    old = _manifest([{"name": "a"}, {"name": "b"}, {"name": "c"}, drv],
                    [{"product_key": "pk", "device_name": "d1", "driver": "drv"}])  # fmt: skip
    new = _manifest([{"name": "a"}, {"name": "b", "memory_mb": 64}, {"name": "c"}, {"name": "d"}, drv])
    found = diff(old, {"a": "1", "b": "2", "c": "3", "drv": "4"}, new,  # type: ignore[arg-type]
                 {"a": "1", "b": "2", "c": "new", "d": "5", "drv": "4"})  # fmt: skip
    functions, routes, devices = found.sections
    assert functions.added == ["d"] and functions.removed == [] and functions.unchanged == ["a", "drv"]
    assert functions.changed == {"b": ["memory_mb"], "c": ["code"]}
    assert devices.removed == ["/pk/d1"] and not routes.added
    assert found.removes_anything and found.removed_summary() == "1 device (/pk/d1)"
    text = found.render().plain
    assert "  ~ b (memory_mb)" in text and "  - /pk/d1" in text and "  + d" in text


def test_a_first_deployment_only_adds() -> None:
    found = diff(None, {}, _manifest([{"name": "a"}]), {"a": "1"})  # type: ignore[arg-type]
    assert not found.removes_anything and found.sections[0].added == ["a"]
    assert found.render().plain.startswith("deployment (none) → (new)")
