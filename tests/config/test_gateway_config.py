"""Gateway configuration: file, then EDGEFC_ variables, then flags; errors name where the bad value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefc.config.gateway import BrokerMode, Isolation, load_gateway_config
from edgefc.errors import ValidationError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("EDGEFC_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_defaults_match_the_contract() -> None:
    config = load_gateway_config()
    assert config.data_dir == Path("./.edgefc") and config.listen_address == ("127.0.0.1", 9999)
    assert config.isolation is Isolation.AUTO
    assert config.mqtt.mode is BrokerMode.MANAGED and config.mqtt.broker_address == ("127.0.0.1", 1883)
    assert config.logs.max_bytes_per_function == 64 << 20 and config.logs.max_age_s == 7 * 86400
    assert config.queues.max_retries == 10 and config.limits.max_bundle_bytes == 50 << 20


def test_layers_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "listen: 0.0.0.0:8000\nisolation: process\nmqtt:\n  broker: mqtt://10.0.0.2\n"
                           "queues: {max_retries: 3}\n")
    monkeypatch.setenv("EDGEFC_QUEUES__MAX_RETRIES", "5")
    monkeypatch.setenv("EDGEFC_LISTEN", "127.0.0.1:7000")
    monkeypatch.setenv("EDGEFC_DATA_DIR", str(tmp_path / "data"))
    for unrelated in ("EDGEFC_TOKEN", "EDGEFC_GATEWAY", "EDGEFC_REQUIRE_ALL", "EDGEFC_NOT_A_KEY", "EDGEFC_MQTT__NOPE"):
        monkeypatch.setenv(unrelated, "1")
    config = load_gateway_config(path, listen="127.0.0.1:0", data_dir=None)
    assert config.listen_address == ("127.0.0.1", 0)  # the flag beats the variable
    assert config.queues.max_retries == 5  # the variable beats the file
    assert config.data_dir == tmp_path / "data"
    assert config.isolation is Isolation.PROCESS
    assert config.mqtt.mode is BrokerMode.EXTERNAL and config.mqtt.broker_address == ("10.0.0.2", 1883)


@pytest.mark.parametrize("text", ["mqtt:\n  broker: off\n", "mqtt:\n  broker: false\n", "mqtt: off\n"])
def test_yaml_off_and_false_both_turn_mqtt_off(tmp_path: Path, text: str) -> None:
    assert load_gateway_config(write(tmp_path, text)).mqtt.broker_address is None


def test_env_can_turn_mqtt_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFC_MQTT__BROKER", "off")
    assert load_gateway_config().mqtt.mode is BrokerMode.OFF


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: 9999\n", "gateway.yaml: listen: must be a string, got 9999 (integer)"),
        ("listen: localhost:99999\n", "gateway.yaml: listen: 'localhost:99999' is not host:port"),
        ("isolation: vm\n", "gateway.yaml: isolation: must be 'auto', 'container' or 'process', got 'vm'"),
        ("mqtt: {broker: mosquitto}\n", "gateway.yaml: mqtt.broker: must be managed, off or mqtt://host:port"),
        ("mqtt: {brokr: off}\n", "gateway.yaml: mqtt: unknown key 'brokr' (did you mean 'broker'?)"),
        ("cloud: {url: ftp://x}\n", "gateway.yaml: cloud.url: 'ftp://x' is not a http or https URL"),
        ("logs: {max_line_bytes: 10}\n", "gateway.yaml: logs.max_line_bytes: must be at least 256, got 10"),
        ("limits: {max_bundle_files: many}\n", "gateway.yaml: limits.max_bundle_files: must be a whole number"),
        ("data_dri: /x\n", "gateway.yaml: unknown key 'data_dri' (did you mean 'data_dir'?)"),
        ("- a\n", "gateway.yaml: the configuration must be a mapping"),
        ("listen: [\n", "gateway.yaml:2:1: invalid YAML"),
    ],
)
def test_bad_file_values_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValidationError) as caught:
        load_gateway_config(path)
    assert any(line.startswith(f"{tmp_path}/{expected}") for line in caught.value.problems), caught.value.problems


def test_bad_env_and_flag_values_name_their_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFC_QUEUES__MAX_RETRIES", "often")
    with pytest.raises(ValidationError) as caught:
        load_gateway_config(listen="nowhere")
    assert caught.value.problems == [
        "option listen: 'nowhere' is not host:port (e.g. 127.0.0.1:9999, [::1]:9999, 0.0.0.0:9999)",
        "EDGEFC_QUEUES__MAX_RETRIES: must be a whole number, got 'often' (string)",
    ]


def test_missing_file_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read the configuration file"):
        load_gateway_config(tmp_path / "absent.yaml")
