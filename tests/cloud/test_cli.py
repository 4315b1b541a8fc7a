"""``edgefc cloud …`` end to end: the operator's commands against a real cloud and a real gateway."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from edgefc.cli.main import cli
from tests.cloud.harness import CloudProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def _cli(cloud: CloudProcess, *args: str) -> Result:
    """One ``edgefc cloud`` command, in this process (click's runner), against the real cloud over HTTP."""
    runner = CliRunner(env={"EDGEFC_CLOUD": cloud.url, "EDGEFC_CLOUD_TOKEN": cloud.token, "NO_COLOR": "1",
                            "COLUMNS": "200"})  # fmt: skip
    return runner.invoke(cli, ["cloud", *args])


def test_the_operator_uploads_assigns_deploys_and_reads_status_and_logs(cloud: CloudProcess, tmp_path: Path,
                                                                        make_gateway: Any) -> None:  # fmt: skip
    code = tmp_path / "greet"
    code.mkdir()
    (code / "index.py").write_text(textwrap.dedent("""
        def handler(event, context):
            print("greeting", event.decode())
            return b"hello " + event
    """))
    assert _cli(cloud, "function", "create", "greet").exit_code == 0
    done = _cli(cloud, "function", "upload", "greet", str(code))
    assert done.exit_code == 0 and "greet version 1" in done.output, done.stderr
    assert "greet" in _cli(cloud, "function", "list").output
    assert "1" in _cli(cloud, "function", "versions", "greet").output

    made = _cli(cloud, "instance", "create", "shop-floor")
    assert made.exit_code == 0, made.stderr
    instance = made.output.split()[1]
    token = next(line.split(": ", 1)[1] for line in made.output.splitlines() if line.startswith("token: "))
    assert f"gateway_id: {instance}" in made.output
    gw = make_gateway(cloud.url, instance, token)
    assert instance in _cli(cloud, "instance", "list").output

    bad = _cli(cloud, "assign", instance, "greet", "--version", "1", "--set", "timeout_s=-1")
    assert bad.exit_code == 2 and "timeout_s" in bad.stderr
    ok = _cli(cloud, "assign", instance, "greet", "--version", "1", "--set", "memory_mb=64", "--set", "env={A: b}")
    assert ok.exit_code == 0 and "memory_mb=64" in ok.output, ok.stderr
    routes = tmp_path / "routes.yaml"
    routes.write_text("- {name: r1, source: api, topic: 'greet/#', target: 'function:greet'}\n")
    assert _cli(cloud, "route", "set", instance, str(routes)).exit_code == 0

    deployed = _cli(cloud, "deploy", instance)
    assert deployed.exit_code == 0, deployed.stderr
    assert "deployment 1 succeeded" in deployed.output
    for stage in ("pending", "downloading", "applying", "succeeded"):
        assert stage in deployed.stderr, deployed.stderr  # the live progress view
    assert gw.invoke("greet", b"edge").content == b"hello edge"

    wait_for(lambda: "greet" in _cli(cloud, "status", instance).output, what="the reported status")
    logs = wait_for(lambda: (r := _cli(cloud, "logs", instance, "greet", "--grep", "greeting")).output and r,
                    what="the log line")  # fmt: skip
    assert "greeting edge" in logs.output
    assert "NotFound" in _cli(cloud, "deploy", "gw-nope").stderr
