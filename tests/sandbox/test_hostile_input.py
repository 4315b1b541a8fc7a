"""Hostile deployments and settings are refused whole, fast, with a clear 4xx naming what is wrong (issue 15:
a 2.4 KB alias bomb held the deploy lock for 145 s; 900-level nesting and a 300-character bundle file name
answered 500, the latter leaking a temp path; NUL in an env value passed; ``mqtt.listen: 0.0.0.0`` gave an
anonymous broker on every interface)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.gateway_harness import EDGEFC, GatewayProcess, fn, zip_of

HELLO = "def handler(event, context):\n    return 'hi'\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("hostile") / "data").start()
    gw.deploy({"functions": [fn("hello")]}, {"hello": HELLO})
    yield gw
    gw.stop()


def _put(gw: GatewayProcess, manifest: str, bundles: dict[str, bytes] | None = None) -> httpx.Response:
    assert gw.client is not None
    files = [("manifest", ("deployment.yaml", manifest.encode(), "application/yaml"))]
    files += [(name, (f"{name}.zip", data, "application/zip")) for name, data in (bundles or {}).items()]
    return gw.client.put("/v1/deployment", files=files, timeout=60)


def _unchanged(gw: GatewayProcess) -> None:
    assert gw.client is not None
    current = gw.client.get("/v1/deployment").json()
    assert [f["name"] for f in yaml.safe_load(current["manifest"])["functions"]] == ["hello"]
    assert gw.invoke("hello").content == b"hi"


def test_alias_bomb_is_refused_at_once(gateway: GatewayProcess) -> None:
    levels = ["a0: &a0 [" + ",".join(["lol"] * 9) + "]"]
    levels += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = "functions: []\n" + "\n".join(levels) + "\n"
    t0 = time.monotonic()
    response = _put(gateway, bomb)
    assert time.monotonic() - t0 < 5
    assert response.status_code in (400, 422), response.text
    assert "aliases counted" in response.text
    _unchanged(gateway)


def test_deep_nesting_is_a_clean_4xx(gateway: GatewayProcess) -> None:
    manifest = (
        "functions:\n- name: deep\n  code: ./deep\n  handler: index.handler\n  config: "
        + "[" * 900
        + "]" * 900
        + "\n"
    )
    response = _put(gateway, manifest, {"deep": zip_of({"index.py": HELLO})})
    assert response.status_code in (400, 422), response.text
    assert "nested deeper" in response.text
    _unchanged(gateway)


def test_too_many_functions_are_refused(gateway: GatewayProcess) -> None:
    manifest = yaml.safe_dump({"functions": [fn(f"f{i}") for i in range(1001)]})
    response = _put(gateway, manifest)
    assert response.status_code in (400, 422), response.text
    assert "functions: at most 1000" in response.text
    _unchanged(gateway)


def test_nul_in_an_env_value_is_refused(gateway: GatewayProcess) -> None:
    manifest = yaml.safe_dump({"functions": [fn("nul", env={"TOKEN": "abc\x00def"})]})
    response = _put(gateway, manifest, {"nul": zip_of({"index.py": HELLO})})
    assert response.status_code in (400, 422), response.text
    assert "functions[0].env.TOKEN" in response.text and "NUL" in response.text
    _unchanged(gateway)


def test_a_long_bundle_file_name_is_a_clean_400(gateway: GatewayProcess) -> None:
    manifest = yaml.safe_dump({"functions": [fn("long")]})
    response = _put(gateway, manifest, {"long": zip_of({"index.py": HELLO, "x" * 300 + ".py": "pass\n"})})
    assert response.status_code in (400, 422), response.text
    assert "too long" in response.text and "(long)" in response.text
    assert ".tmp-" not in response.text and str(gateway.data_dir) not in response.text
    _unchanged(gateway)


def test_managed_broker_on_a_public_address_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("mqtt:\n  broker: managed\n  listen: 0.0.0.0:1883\n")
    done = subprocess.run([*EDGEFC, "gateway", "run", "--config", str(config), "--data-dir", str(tmp_path / "d"),
                           "--listen", "127.0.0.1:0"], capture_output=True, timeout=30)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert b"mqtt.listen" in done.stderr and b"loopback" in done.stderr
    assert not (tmp_path / "d" / "gateway.json").exists()


def test_docs_example_config_is_accepted() -> None:
    from edgefc.config.gateway import GatewayConfig

    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    example = text.split("## Example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    config = GatewayConfig.model_validate(yaml.safe_load(example))
    assert config.mqtt.listen.startswith("127.0.0.1:")


def test_an_empty_admin_token_is_refused_at_start(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "admin.token").write_text("")  # what a first start on a full disk used to leave
    done = subprocess.run([*EDGEFC, "gateway", "run", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                           "--isolation", "process"], capture_output=True, timeout=30)  # fmt: skip
    assert done.returncode != 0
    assert b"admin.token" in done.stderr and b"delete the file" in done.stderr, done.stderr[-2000:]
    assert not (data / "gateway.json").exists()
    # A fresh data dir gets a full token, written whole (no temporary file left beside it).
    fresh = GatewayProcess(tmp_path / "fresh").start()
    try:
        assert len(fresh.token) >= 32
        assert not list(fresh.data_dir.glob(".*.tmp"))
        assert (fresh.data_dir / "admin.token").stat().st_mode & 0o777 == 0o600
    finally:
        fresh.stop()


def test_a_zip_needing_an_unknown_version_is_a_clean_4xx(gateway: GatewayProcess) -> None:
    # Found by tests/fuzz: zipfile raises NotImplementedError for "version needed to extract" 6.4.
    data = bytearray(zip_of({"index.py": HELLO}))
    at = data.find(b"PK\x01\x02")
    data[at + 6 : at + 8] = (64).to_bytes(2, "little")
    response = _put(gateway, yaml.safe_dump({"functions": [fn("zipv")]}), {"zipv": bytes(data)})
    assert response.status_code in (400, 422), response.text
    assert "not a valid zip file" in response.text
    _unchanged(gateway)
