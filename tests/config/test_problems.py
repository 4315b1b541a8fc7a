"""Problem lines name the entry they are about: ``functions[7] (climate).memory_mb``."""

from __future__ import annotations

from edgefc.config.problems import label_paths

DATA = {
    "functions": [{"name": "a"}, {"name": "climate"}, "not a mapping", {"handler": "no.name"}],
    "routes": [{"name": "alarms"}],
    "devices": [{"product_key": "pk1", "device_name": "s1"}, {"product_key": 3}],
}


def test_entries_are_named_once_and_only_where_a_name_exists() -> None:
    lines = [
        "functions[1].memory_mb: must be between 16 and 16384, got 1",
        "functions[1] (climate): unpacks to more than the limit",  # already named by the gateway
        "functions[2]: must be a mapping",
        "functions[3].name: missing",
        "functions[9].code: out of range",
        "routes[0].topic: bad filter",
        "devices[0].driver: no function named 'x'",
        "devices[1].device_name: missing",
        "deployment.yaml:3:1: invalid YAML",
    ]
    assert label_paths(lines, DATA) == [
        "functions[1] (climate).memory_mb: must be between 16 and 16384, got 1",
        "functions[1] (climate): unpacks to more than the limit",
        "functions[2]: must be a mapping",
        "functions[3].name: missing",
        "functions[9].code: out of range",
        "routes[0] (alarms).topic: bad filter",
        "devices[0] (/pk1/s1).driver: no function named 'x'",
        "devices[1].device_name: missing",
        "deployment.yaml:3:1: invalid YAML",
    ]
    assert label_paths(lines, ["not", "a", "manifest"]) == lines
