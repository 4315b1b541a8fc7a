"""The ``edgefc`` command against a real gateway: the quick-start path, tables, and the exit codes of CONTRACT §5."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from tests.e2e.gateway_harness import EDGEFC, GatewayProcess, fn


def run(*args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``edgefc`` with no gateway settings from the test's environment unless given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFC_")}
    return subprocess.run([*EDGEFC, *args], env={**clean, **(env or {})}, input=input, capture_output=True, timeout=60)


def test_init_deploy_invoke_ps(gateway: GatewayProcess, tmp_path: Path) -> None:
    project = tmp_path / "project"
    made = run("init", "hello", "--dir", str(project))
    assert made.returncode == 0, made.stderr
    assert (project / "functions" / "hello" / "index.py").is_file()
    assert [f["name"] for f in yaml.safe_load((project / "deployment.yaml").read_text())["functions"]] == ["hello"]
    assert run("init", "second", "--dir", str(project), "--mode", "continuous").returncode == 0

    deployed = gateway.cli("deploy", str(project / "deployment.yaml"))
    assert deployed.returncode == 0, deployed.stderr
    assert b"applied" in deployed.stdout and b"hello" in deployed.stdout

    invoked = gateway.cli("invoke", "hello", "--data", '{"name":"edge"}')
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"hello": "edge"}
    from_stdin = gateway.cli("invoke", "hello", "--file", "-", input=b'{"name":"pipe"}')
    assert json.loads(from_stdin.stdout) == {"hello": "pipe"}

    table = gateway.cli("ps")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["NAME", "MODE", "STATE"]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.strip()}
    assert rows["hello"][1] == "on_demand" and rows["second"][1:3] == ["continuous", "running"]
    as_json = json.loads(gateway.cli("ps", "--json").stdout)
    assert {f["name"]: f["invocations"] for f in as_json} == {"hello": 2, "second": 0}


def test_token_from_the_data_dir(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("f")]}, {"f": "def handler(event, context):\n    return event\n"})
    done = run("--data-dir", str(gateway.data_dir), "invoke", "f", "--data", "hi", env={"EDGEFC_GATEWAY": gateway.url})
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hi\n"
    refused = run("invoke", "f", env={"EDGEFC_GATEWAY": gateway.url, "EDGEFC_TOKEN": "wrong"})
    assert refused.returncode == 2 and b"Unauthorized" in refused.stderr and b"--token" in refused.stderr


def test_invalid_manifest_exits_2_naming_the_problem(gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "index.py").write_text("def handler(event, context):\n    return 'x'\n")
    bad = tmp_path / "deployment.yaml"
    bad.write_text(yaml.safe_dump({"functions": [{**fn("f"), "memory_mb": 1, "env": {f"K{i}": "v" for i in range(11)}}]}))
    done = gateway.cli("deploy", str(bad))
    assert done.returncode == 2
    assert b"functions[0] (f).memory_mb" in done.stderr and b"functions[0] (f).env" in done.stderr
    assert done.stdout == b""
    bad.write_text(yaml.safe_dump({"functions": [{**fn("f"), "code": "./missing"}]}))
    done = gateway.cli("deploy", str(bad))
    assert done.returncode == 2 and b"functions[0] (f).code" in done.stderr
    missing = gateway.cli("deploy", str(tmp_path / "nothing.yaml"))
    assert missing.returncode == 2 and b"nothing.yaml" in missing.stderr
    assert gateway.client is not None and gateway.client.get("/v1/deployment").json()["version"] is None


def test_function_failure_exits_1_with_the_error(gateway: GatewayProcess) -> None:
    src = "import time\ndef handler(event, context):\n    if event == b'hang':\n        time.sleep(10)\n    raise ValueError('valve stuck')\n"
    gateway.deploy({"functions": [fn("bad", timeout_s=1)]}, {"bad": src})
    done = gateway.cli("invoke", "bad", "--data", "x")
    assert done.returncode == 1
    assert b"Handled" in done.stderr and b"ValueError: valve stuck" in done.stderr and b"raise ValueError" in done.stderr
    late = gateway.cli("invoke", "bad", "--data", "hang")
    assert late.returncode == 1 and b"Timeout" in late.stderr
    unknown = gateway.cli("invoke", "nope")
    assert unknown.returncode == 2 and b"NotFound" in unknown.stderr


def test_a_version_that_fails_to_start_shows_its_traceback(gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "index.py").write_text("raise RuntimeError('needs config')\ndef handler(event, context):\n    pass\n")
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump({"functions": [{**fn("svc"), "mode": "continuous"}]}))
    done = gateway.cli("deploy", str(tmp_path / "deployment.yaml"))
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "DeployFailed" in err and "svc: InitError: RuntimeError: needs config" in err
    assert "raise RuntimeError('needs config')" in err and "{'function'" not in err


def test_unreachable_gateway_exits_3() -> None:
    env = {"EDGEFC_GATEWAY": "http://127.0.0.1:1", "EDGEFC_TOKEN": "t"}
    for args in (("invoke", "f", "--data", "x"), ("ps",), ("rollback",)):
        done = run(*args, env=env)
        assert done.returncode == 3, (args, done)
        assert b"unreachable" in done.stderr and b"127.0.0.1:1" in done.stderr


def test_async_invoke_prints_an_id(gateway: GatewayProcess) -> None:
    gateway.deploy({"functions": [fn("f")]}, {"f": "def handler(event, context):\n    return event.upper()\n"})
    done = gateway.cli("invoke", "f", "--data", "later", "--async")
    assert done.returncode == 0, done.stderr
    inv_id = done.stdout.decode().strip()
    assert len(inv_id) >= 16 and inv_id.isalnum()

    def finished() -> dict | None:  # type: ignore[type-arg]
        shown = gateway.cli("invocation", inv_id)
        found = json.loads(shown.stdout)
        return found if found["state"] == "succeeded" else None

    found = gateway.wait_for(finished, what="async invocation")
    assert found["id"] == inv_id and found["function"] == "f"


def test_init_refuses_bad_names_and_overwrites() -> None:
    bad = run("init", "bad.name", "--dir", "/tmp/edgefc-cli-never-made")
    assert bad.returncode == 2 and b"bad.name" in bad.stderr
    assert not Path("/tmp/edgefc-cli-never-made").exists()


def test_init_twice_exits_2(tmp_path: Path) -> None:
    assert run("init", "f", "--dir", str(tmp_path)).returncode == 0
    again = run("init", "f", "--dir", str(tmp_path))
    assert again.returncode == 2 and b"already exists" in again.stderr


def test_gateway_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("listen: nowhere\nunknown_key: 1\n")
    done = run("gateway", "run", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2
    assert b"unknown_key" in done.stderr and b"gateway.yaml" in done.stderr
