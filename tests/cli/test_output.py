"""The CLI's output in an 80-column terminal and piped: whole names and states, formats, times, no colour codes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from edgefc import __version__
from edgefc.cli.main import cli
from tests.cli.harness import ECHO, gw_env, run, run_in_terminal, write_project
from tests.e2e.gateway_harness import GatewayProcess, fn

LONG = "climate-controller-north-wing-2"  # 31 characters: the kind of name that was cut to `clim…`
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ESC = "\x1b"
FAILING = "def handler(event, context):\n    raise ValueError('valve stuck')\n"
TEXT_RESULT = "def handler(event, context):\n    return 'grüße ' + event.decode()\n"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """One gateway with the functions below, shared by this module's tests (they only read)."""
    tmp_path = tmp_path_factory.mktemp("output")
    gw = GatewayProcess(tmp_path / "data").start()
    try:
        yield gw, _deploy(gw, tmp_path)
    finally:
        gw.stop()


def _deploy(gw: GatewayProcess, tmp_path: Path) -> dict[str, str]:
    env = gw_env(gw, tmp_path)
    manifest = {"functions": [
        fn(LONG, mode="continuous", env={"API_KEY": "s3cret-value", "SITE": "north"}),
        fn("tick", schedule="@every 1h", schedule_payload={"task": "x"}),
        fn("broken"), fn("text"),
    ]}  # fmt: skip
    path = write_project(tmp_path / "p", manifest, {LONG: ECHO, "tick": ECHO, "broken": FAILING, "text": TEXT_RESULT})
    done = run("deploy", str(path), env=env)
    assert done.returncode == 0, done.stderr
    gw.wait_for(lambda: gw.status(LONG)["state"] == "running", what="continuous function running")
    return env


def test_ps_at_80_columns_keeps_names_and_states_whole(deployed: tuple[GatewayProcess, dict[str, str]]) -> None:
    gateway, env = deployed
    assert run("invoke", "broken", env=env).returncode == 1
    code, screen = run_in_terminal("ps", env={**env, "NO_COLOR": "1"}, columns=80)
    assert code == 0, screen
    assert ESC not in screen, repr(screen)  # NO_COLOR: not one escape sequence
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), lines
    assert "…" not in screen, screen
    header = lines[0].split()
    assert header[:3] == ["NAME", "MODE", "STATE"] and "LAST" not in header, header  # columns dropped, not cut
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[LONG][1:3] == ["continuous", "running"], rows

    code, top = run_in_terminal("top", "--once", env={**env, "NO_COLOR": "1"}, columns=80)
    assert code == 0 and ESC not in top and "…" not in top, top
    table = top.splitlines()[2:]
    assert all(len(line) <= 80 for line in table) and re.search(rf"^{LONG}\s+running\s", top, re.M), top

    code, wide = run_in_terminal("ps", "-o", "wide", env=env, columns=80)
    assert code == 0 and "LAST EXIT" in wide and "P50 MS" in wide, wide

    piped = run("ps", env=env)  # piped: every column, whole, and no colour whatever the terminal
    text = piped.stdout.decode()
    assert ESC not in text and "LAST EXIT" in text and "ISOLATION" in text, text
    assert re.search(rf"^{LONG}\s+continuous\s+running", text, re.M), text

    as_json = json.loads(run("-o", "json", "ps", env=env).stdout)
    assert {f["name"] for f in as_json} == {LONG, "tick", "broken", "text"}
    started = next(f for f in as_json if f["name"] == LONG)["instances"][0]["started_at"]
    assert RFC3339.match(started), started
    as_yaml = yaml.safe_load(run("ps", "-o", "yaml", env=env).stdout)
    assert [f["name"] for f in as_yaml] == [f["name"] for f in as_json]


def test_describe_shows_settings_env_names_schedule_and_errors(deployed: tuple[GatewayProcess, dict[str, str]]) -> None:
    gateway, env = deployed
    assert run("invoke", "broken", "--data", "x", env=env).returncode == 1
    shown = run("describe", LONG, env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "API_KEY, SITE" in text and "s3cret-value" not in text, text
    assert "continuous" in text and "running" in text and "memory_mb" in text, text

    tick = json.loads(run("describe", "tick", "-o", "json", env=env).stdout)
    assert tick["schedule"]["expression"] == "@every 1h" and RFC3339.match(tick["schedule"]["next_fire"]), tick

    def errors_logged() -> dict | None:  # type: ignore[type-arg]
        found = json.loads(run("-o", "json", "describe", "broken", env=env).stdout)
        return found if found["recent_errors"] else None

    broken = gateway.wait_for(errors_logged, what="the error in describe")
    assert any("valve stuck" in e["message"] for e in broken["recent_errors"]), broken
    assert all(RFC3339.match(e["time"]) for e in broken["recent_errors"]), broken
    text = run("describe", "broken", env=env).stdout.decode()
    assert re.search(r"^  \S+Z ValueError: valve stuck$", text, re.M), text  # a traceback's gist, not its first line
    assert run("describe", "nope", env=env).returncode == 2


def test_async_results_are_text_when_they_are_text(deployed: tuple[GatewayProcess, dict[str, str]]) -> None:
    gateway, env = deployed
    inv = run("invoke", "text", "--data", "edge", "--async", env=env).stdout.decode().strip()

    def finished() -> dict | None:  # type: ignore[type-arg]
        found = json.loads(run("invocation", inv, env=env).stdout)
        return found if found["state"] == "succeeded" else None

    found = gateway.wait_for(finished, what="async invocation")
    assert found["result"] == "grüße edge" and "result_base64" not in found, found
    assert RFC3339.match(found["finished_at"]), found


def test_version_help_and_completion() -> None:
    done = run("--version", env={})
    assert done.returncode == 0 and done.stdout.decode().strip() == f"edgefc {__version__}"
    completion = run(env={"_EDGEFC_COMPLETE": "bash_source"})
    assert completion.returncode == 0 and b"_edgefc_completion" in completion.stdout

    def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        found = [prefix]
        for name, command in group.commands.items():
            found += commands(command, (*prefix, name)) if isinstance(command, click.Group) else [(*prefix, name)]
        return found

    for path in commands(cli):
        shown = CliRunner().invoke(cli, [*path, "--help"], prog_name="edgefc", env={"NO_COLOR": "1"})
        text = shown.output
        assert shown.exit_code == 0 and text.startswith("Usage: edgefc"), (path, text)
        # Docstrings are read on a terminal, not rendered: no reST or rich markup may show.
        for raw in ("``", "[/", ":func:", ":class:", "[bold", ESC):
            assert raw not in text, (path, raw, text)
