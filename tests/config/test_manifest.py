"""Manifest and bundle validation: every bad input is refused with its path named, good input round-trips."""

from __future__ import annotations

import copy
import io
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefc.config import check_function_code, manifest_from_dict, parse_manifest
from edgefc.config.manifest import Mode
from edgefc.errors import ValidationError
from edgefc.package import check_zip

GOOD: dict[str, Any] = {
    "version": "v1",
    "functions": [
        {"name": "hello", "code": "./functions/hello", "handler": "index.handler"},
        {"name": "sensor-driver", "handler": "driver.main", "mode": "continuous"},
        {"name": "alarm", "handler": "index.handler", "schedule": "*/5 * * * *", "env": {"PORT": 8080}},
    ],
    "routes": [
        {"name": "temp-alarm", "source": "device:/pk1/+", "topic": "/sys/+/+/thing/event/property/post",
         "target": "function:alarm", "qos": 1},
    ],
    "devices": [{"product_key": "pk1", "device_name": "sensor-1", "driver": "sensor-driver",
                 "tags": {"room": "lab"}}],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one value replaced (or added) at a dotted path such as ``functions.0.memory_mb``."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def fn(**fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data["functions"][0].update(fields)
    return data


BAD_MANIFESTS = [
    ("unknown key", fn(memroy_mb=5), "functions[0]: unknown key 'memroy_mb' (did you mean 'memory_mb'?)"),
    ("unknown top-level key", with_change("function", []), "deployment.yaml: unknown key 'function'"),
    ("wrong type memory", fn(memory_mb="lots"), "functions[0].memory_mb: must be a whole number"),
    ("bool as number", fn(max_queue=True), "functions[0].max_queue: must be a whole number, got true"),
    ("functions not a list", with_change("functions", {"a": 1}), "functions: must be a list"),
    ("function not a mapping", with_change("functions.1", "hello"), "functions[1]: must be a mapping"),
    ("missing handler", with_change("functions.0", {"name": "hello"}), "functions[0]: missing required key 'handler'"),
    ("name with a dot", fn(name="Hello.World"), "functions[0].name: 'Hello.World' (string) is not a valid name"),
    ("name too long", fn(name="a" * 64), "functions[0].name:"),
    ("name starts with dash", fn(name="-x"), "functions[0].name:"),
    ("duplicate function", with_change("functions.2.name", "hello"), "functions[2].name: duplicate function name 'hello'"),
    ("handler without function", fn(handler="index"), "functions[0].handler:"),
    ("runtime", fn(runtime="nodejs12"), "functions[0].runtime: must be 'python3'"),
    ("11 env variables", fn(env={f"K{i}": "v" for i in range(11)}), "functions[0].env: at most 10 variables, got 11"),
    ("bad env name", fn(env={"MY-VAR": "x"}), "functions[0].env.MY-VAR: not a valid variable name"),
    ("reserved env", fn(env={"FUNCTION_NAME": "x"}), "functions[0].env.FUNCTION_NAME: reserved"),
    ("bool env value", fn(env={"DEBUG": True}), "functions[0].env.DEBUG: must be a string, got true (boolean)"),
    ("zero memory", fn(memory_mb=0), "functions[0].memory_mb: must be between 16 and 16384, got 0"),
    ("absurd memory", fn(memory_mb=10**9), "functions[0].memory_mb: must be between 16 and 16384"),
    ("negative timeout", fn(timeout_s=-1), "functions[0].timeout_s: must be more than 0 and at most 86400, got -1"),
    ("absurd concurrency", fn(max_concurrency=10**6), "functions[0].max_concurrency: must be between 1 and 1000"),
    ("negative queue", fn(max_queue=-1), "functions[0].max_queue: must be between 0 and 100000, got -1"),
    ("zero instances", fn(max_instances=0), "functions[0].max_instances: must be between 1 and 100, got 0"),
    ("bad mode", fn(mode="always"), "functions[0].mode: must be 'on_demand' or 'continuous', got 'always'"),
    ("bad isolation", fn(isolation="vm"), "functions[0].isolation: must be"),
    ("invalid cron", fn(schedule="every five minutes"), "functions[0].schedule: 'every five minutes' has 3 field(s)"),
    ("cron out of range", fn(schedule="61 * * * *"), "functions[0].schedule: '61 * * * *' has a value out of range"),
    ("every 0s", fn(schedule="@every 0s"), "functions[0].schedule: '@every 0s' is too short"),
    ("unknown time zone", fn(schedule="CRON_TZ=Mars/Olympus 0 8 * * *"), "functions[0].schedule: unknown time zone"),
    ("continuous idle timeout", with_change("functions.1.idle_timeout_s", 60),
     "functions[1].idle_timeout_s: only applies to on_demand functions"),
    ("port out of range", fn(container={"ports": ["70000:80"]}), "functions[0].container.ports[0]: port '70000:80'"),
    ("11 ports", fn(container={"ports": [f"{8000 + i}:80" for i in range(11)]}),
     "functions[0].container.ports: at most 10 ports, got 11"),
    ("relative device", fn(container={"devices": ["ttyUSB0:/dev/ttyS0"]}), "functions[0].container.devices[0]:"),
    ("device perms", fn(container={"devices": ["/dev/a:/dev/b:rwx"]}), "permissions must be letters from 'rwm'"),
    ("volume option", fn(container={"volumes": ["/a:/b:rx"]}), "functions[0].container.volumes[0]:"),
    ("privileged with devices", fn(container={"privileged": True, "devices": ["/dev/a:/dev/b"]}),
     "functions[0].container.devices: a privileged container already sees every device"),
    ("container with process", fn(isolation="process", container={"host_network": True}),
     "functions[0].container: container settings need isolation container or default"),
    ("topic # in the middle", with_change("routes.0.topic", "a/#/b"), "routes[0].topic: topic filter 'a/#/b'"),
    ("topic +x", with_change("routes.0.topic", "a/+x"), "routes[0].topic: topic filter 'a/+x': '+' must be a whole level"),
    ("route to unknown function", with_change("routes.0.target", "function:nope"),
     "routes[0].target: no function named 'nope'"),
    ("unknown source kind", with_change("routes.0.source", "sensor"), "routes[0].source: unknown source 'sensor'"),
    ("qos 2", with_change("routes.0.qos", 2), "routes[0].qos: must be 0 (at most once) or 1 (at least once), got 2"),
    ("wildcard target topic", with_change("routes.0.target", "mqtt:out/+"), "routes[0].target: topic 'out/+'"),
    ("duplicate route", {**GOOD, "routes": GOOD["routes"] * 2}, "routes[1].name: duplicate route name 'temp-alarm'"),
    ("device unknown driver", with_change("devices.0.driver", "ghost"), "devices[0].driver: no function named 'ghost'"),
    ("device on_demand driver", with_change("devices.0.driver", "hello"), "devices[0].driver: driver 'hello' must be a continuous"),
    ("duplicate device", {**GOOD, "devices": GOOD["devices"] * 2}, "devices[1]: duplicate device /pk1/sensor-1"),
    ("device tag not a string", with_change("devices.0.tags", {"floor": 3}), "devices[0].tags.floor: must be a string, got 3"),
    ("version as number", with_change("version", 1.1), "version: must be a string, got 1.1 (number)"),
]


@pytest.mark.parametrize(("case", "data", "expected"), BAD_MANIFESTS, ids=[case[0] for case in BAD_MANIFESTS])
def test_bad_manifest_is_refused_naming_the_path(case: str, data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_manifest(yaml.safe_dump(data))
    problems = caught.value.problems
    assert any(line.startswith(expected) or expected in line for line in problems), problems
    assert "pydantic" not in str(caught.value)
    # The dict path (cloud agent, API JSON) answers the same way.
    with pytest.raises(ValidationError) as again:
        manifest_from_dict(data, source="deployment.yaml")
    assert again.value.problems == problems


def test_every_problem_is_listed_at_once() -> None:
    data = with_change("functions.1.idle_timeout_s", 60)
    data["functions"][0].update(memory_mb=0, env={f"K{i}": "v" for i in range(11)})
    data["functions"].append({"name": "hello", "handler": "other.handler"})
    with pytest.raises(ValidationError) as caught:
        manifest_from_dict(data)
    assert caught.value.problems == [
        "functions[0].env: at most 10 variables, got 11",
        "functions[0].memory_mb: must be between 16 and 16384, got 0",
        "functions[1].idle_timeout_s: only applies to on_demand functions; a continuous function is never "
        "stopped for idleness",
        "functions[3].name: duplicate function name 'hello'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("functions: [", "deployment.yaml:1:"),
        ("- name: x\n", "deployment.yaml: the manifest must be a mapping"),
        ("functions: []\nfunctions: []\n", "deployment.yaml:2:1: invalid YAML: the key 'functions' appears twice"),
        (b"\xff\xfe\x00", "deployment.yaml: not UTF-8 text"),
    ],
)
def test_unreadable_yaml_is_refused_with_its_line(text: str | bytes, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_manifest(text)
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_good_manifest_round_trips_with_contract_defaults() -> None:
    manifest = parse_manifest(yaml.safe_dump(GOOD))
    hello = manifest.functions[0]
    assert (hello.memory_mb, hello.timeout_s, hello.max_queue, hello.max_concurrency) == (512, 3.0, 100, 1)
    assert hello.mode is Mode.ON_DEMAND and hello.effective_idle_timeout_s == 300
    assert manifest.functions[1].effective_idle_timeout_s is None
    assert manifest.functions[2].env == {"PORT": "8080"}
    assert manifest.routes[0].topic.startswith("/sys/") and manifest.routes[0].qos == 1
    assert manifest.routes[0].target_id == "alarm"
    assert manifest_from_dict(manifest.model_dump(mode="json")) == manifest


def test_empty_manifest_means_nothing_deployed() -> None:
    assert parse_manifest("").functions == []
    assert parse_manifest("functions:\nroutes:\n").routes == []


def test_container_spec_carries_the_container_section() -> None:
    spec = parse_manifest(yaml.safe_dump(fn(isolation="container", container={
        "ports": ["8080:80/tcp"], "devices": ["/dev/ttyUSB0:/dev/ttyS0:rwm"], "volumes": ["/var/lib/a:/data:ro"],
    }))).functions[0].container_spec()
    assert spec.ports == ("8080:80/tcp",) and spec.devices == ("/dev/ttyUSB0:/dev/ttyS0:rwm",)
    assert spec.volumes == ("/var/lib/a:/data:ro",) and not spec.privileged


# --- function code, checked without importing it -------------------------------------------------------


def spec_for(handler: str, initializer: str | None = None) -> Any:
    data = fn(handler=handler, initializer=initializer)
    return manifest_from_dict(data).functions[0]


CODE_CASES = [
    ("missing file", {"other.py": "def handler(e, c): pass\n"}, "index.handler", None,
     "functions[0].handler: 'index.handler' needs the file index.py"),
    ("missing function", {"index.py": "def main(e, c): pass\n"}, "index.handler", None,
     "functions[0].handler: index.py defines no top-level function 'handler' (functions there: main)"),
    ("nested function", {"index.py": "def outer():\n    def handler(e, c): pass\n"}, "index.handler", None,
     "functions[0].handler: index.py defines no top-level function 'handler'"),
    ("syntax error", {"index.py": "def handler(e, c)\n    pass\n"}, "index.handler", None,
     "functions[0].handler: index.py:1: syntax error"),
    ("missing initializer", {"index.py": "def handler(e, c): pass\n"}, "index.handler", "index.init",
     "functions[0].initializer: index.py defines no top-level function 'init'"),
    ("async handler", {"index.py": "async def handler(e, c): pass\n"}, "index.handler", None,
     "functions[0].handler: index.py: handler is 'async def'"),
]


@pytest.mark.parametrize(("case", "files", "handler", "initializer", "expected"), CODE_CASES,
                         ids=[c[0] for c in CODE_CASES])
def test_bad_function_code_is_found_without_importing(
    tmp_path: Path, case: str, files: dict[str, str], handler: str, initializer: str | None, expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text + "raise SystemExit('imported!')\n" if "syntax" not in case else text)
    problems = check_function_code(spec_for(handler, initializer), tmp_path, path="functions[0]")
    assert any(line.startswith(expected) for line in problems), problems


def test_good_function_code_passes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("try:\n    from x import handler\nexcept ImportError:\n"
                                             "    handler = None\ndef init(ctx): pass\n")
    (tmp_path / "index.py").write_text("import json\ndef handler(event, context):\n    return event\n")
    assert check_function_code(spec_for("pkg.mod.handler", "pkg.mod.init"), tmp_path, path="functions[0]") == []
    assert check_function_code(spec_for("index.handler"), tmp_path, path="functions[0]") == []


# --- bundles -------------------------------------------------------------------------------------------


def zip_of(*entries: tuple[str, bytes, int]) -> bytes:
    """A zip with (name, content, unix mode) entries, written the way a hostile tool would."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write on purpose
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def forged_size_bomb() -> bytes:
    """A zip whose headers claim 10 bytes for an entry that inflates to 1 MiB."""
    data = bytearray(zip_of(("index.py", b"\0" * (1 << 20), stat.S_IFREG | 0o644)))
    real = (1 << 20).to_bytes(4, "little")
    fake = (10).to_bytes(4, "little")
    return bytes(data.replace(real, fake))


REG = stat.S_IFREG | 0o644
BAD_BUNDLES = [
    ("zip-slip", zip_of(("../../etc/cron.d/evil", b"x", REG)), "climbs out of the bundle with '..'"),
    ("absolute path", zip_of(("/etc/passwd", b"x", REG)), "entry '/etc/passwd' has an absolute path"),
    ("symlink out", zip_of(("index.py", b"/etc/shadow", stat.S_IFLNK | 0o777)), "entry 'index.py' is a symbolic link"),
    ("zip bomb", zip_of(("index.py", b"\0" * (2 << 20), REG)), "unpacks to 2.0 MiB, more than the limit of 1.0 MiB"),
    ("forged sizes", forged_size_bomb(), "entry 'index.py' is corrupt"),
    ("too many files", zip_of(*[(f"f{i}.py", b"", REG) for i in range(11)]), "11 files, more than the limit of 10"),
    ("corrupt zip", b"PK\x03\x04" + b"\x00" * 64, "not a valid zip file"),
    ("truncated zip", zip_of(("index.py", b"x" * 1000, REG))[:-30], "not a valid zip file"),
    ("duplicate entries", zip_of(("a.py", b"1", REG), ("a.py", b"2", REG)), "entry 'a.py' appears twice"),
]


@pytest.mark.parametrize(("case", "data", "expected"), BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES])
def test_bad_bundle_is_refused_naming_the_function(case: str, data: bytes, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_zip(data, max_bytes=1 << 20, max_files=10, label="functions[0] (hello)")
    assert any(line.startswith("functions[0] (hello): ") and expected in line for line in caught.value.problems), (
        caught.value.problems
    )


# --- the validator never breaks, whatever it is fed ---------------------------------------------------

def json_like(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(10**6), 10**6) | floats | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=20,
    )


json_values = json_like(st.floats(allow_nan=True))
field_names = st.sampled_from(
    ["name", "handler", "memory_mb", "timeout_s", "env", "schedule", "mode", "container", "idle_timeout_s",
     "max_queue", "isolation", "initializer", "config", "runtime", "bogus"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["functions", "routes", "devices", "version", "x"]),
                       st.lists(st.dictionaries(field_names, json_values, max_size=6), max_size=3) | json_values,
                       max_size=4))
def test_random_input_only_ever_raises_validation_error(data: dict[str, Any]) -> None:
    try:
        manifest_from_dict(data)
    except ValidationError as exc:
        assert exc.problems and all(": " in line for line in exc.problems)


names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
function_specs = st.fixed_dictionaries(
    {"name": names, "handler": st.from_regex(r"[a-z_][a-z0-9_]{0,8}\.[a-z_][a-z0-9_]{0,8}", fullmatch=True)},
    optional={
        "memory_mb": st.integers(16, 16384),
        "timeout_s": st.floats(0.001, 86400),
        "max_queue": st.integers(0, 100000),
        "max_concurrency": st.integers(1, 1000),
        "env": st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True).filter(
            lambda k: not k.startswith("EDGEFC_") and k != "FUNCTION_NAME"), st.text(max_size=20).filter(lambda v: "\x00" not in v), max_size=10),
        "schedule": st.sampled_from(["*/5 * * * *", "0 */5 * * * *", "@every 1m30s", "@daily"]),
        "config": json_like(st.floats(allow_nan=False, allow_infinity=False)),
    },
)


@settings(max_examples=100, deadline=None)
@given(st.lists(function_specs, max_size=4, unique_by=lambda f: f["name"]))
def test_valid_generated_specs_pass(functions: list[dict[str, Any]]) -> None:
    manifest = manifest_from_dict({"functions": functions})
    assert [f.name for f in manifest.functions] == [f["name"] for f in functions]
