"""``edgefc deploy`` never removes anything silently, refuses a reused version name, and lists every problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.cli.harness import ECHO, clean_env, gw_env, run, run_in_terminal, write_project
from tests.e2e.gateway_harness import GatewayProcess, fn


def _current(gw: GatewayProcess) -> dict:  # type: ignore[type-arg]
    assert gw.client is not None
    return gw.client.get("/v1/deployment").json()  # type: ignore[no-any-return]


def test_a_deploy_that_removes_shows_the_diff_and_asks(gateway: GatewayProcess, tmp_path: Path) -> None:
    env = gw_env(gateway, tmp_path)
    first = write_project(tmp_path / "a", {"functions": [fn("keep"), fn("old")],
                                           "devices": []}, {"keep": ECHO, "old": ECHO})  # fmt: skip
    done = run("deploy", str(first), env=env)
    assert done.returncode == 0, done.stderr  # removes nothing: no question asked
    before = _current(gateway)

    # `edgefc init mine && edgefc deploy` in a fresh folder: the quickstart trap.
    second = write_project(tmp_path / "b", {"functions": [fn("keep"), fn("mine")]}, {"keep": ECHO, "mine": ECHO})
    refused = run("deploy", str(second), env=env)
    assert refused.returncode == 2, refused
    err = refused.stderr.decode()
    assert "removes 1 function (old)" in err and "--yes" in err and "--dry-run" in err, err
    assert "- old" in err and "+ mine" in err, err  # the diff was shown before refusing
    assert _current(gateway) == before

    dry = run("deploy", str(second), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.decode().splitlines()
    assert "  + mine" in lines and "  - old" in lines and "  = 1 unchanged" in lines, lines
    as_json = json.loads(run("deploy", str(second), "--dry-run", "-o", "json", env=env).stdout)
    assert as_json["removes_anything"] and as_json["functions"]["removed"] == ["old"], as_json
    assert _current(gateway) == before

    code, screen = run_in_terminal("deploy", str(second), env=env, answer=b"n\n")
    assert code == 2 and "This removes 1 function (old). Apply it?" in screen, screen
    assert _current(gateway) == before

    applied = run("deploy", str(second), "--yes", env=env)
    assert applied.returncode == 0, applied.stderr
    assert b"removed: old" in applied.stdout
    assert {f["name"] for f in gateway.client.get("/v1/functions").json()} == {"keep", "mine"}  # type: ignore[union-attr]

    # A changed setting is shown as such; nothing is removed, so it applies without asking.
    third = write_project(tmp_path / "b", {"functions": [fn("keep", memory_mb=64), fn("mine")]},
                          {"keep": ECHO, "mine": ECHO})  # fmt: skip
    shown = run("deploy", str(third), "--dry-run", env=env)
    assert "  ~ keep (memory_mb)" in shown.stdout.decode(), shown.stdout


def test_the_same_version_name_with_other_content_is_refused(gateway: GatewayProcess, tmp_path: Path) -> None:
    env = gw_env(gateway, tmp_path)
    path = write_project(tmp_path / "p", {"version": "1.0", "functions": [fn("f")]}, {"f": ECHO})
    assert run("deploy", str(path), env=env).returncode == 0
    again = run("deploy", str(path), env=env)  # the very same content: fine, nothing changes
    assert again.returncode == 0, again.stderr
    path.write_text("# only a comment is new\n" + path.read_text())  # the same desired state, written differently
    assert run("deploy", str(path), env=env).returncode == 0
    (tmp_path / "p" / "f" / "index.py").write_text("def handler(event, context):\n    return b'new'\n")
    refused = run("deploy", str(path), env=env)
    assert refused.returncode == 2, refused
    assert b"version '1.0' is already deployed with different content" in refused.stderr
    assert gateway.invoke("f", b"x").content == b"x"
    shown = json.loads(run("deployment", env=env).stdout)
    assert shown["version"] == "1.0" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", shown["applied_at"]), shown
    assert yaml.safe_load(run("-o", "yaml", "deployment", env=env).stdout)["applied_at"] == shown["applied_at"]


def test_every_problem_at_once_with_the_function_named(tmp_path: Path) -> None:
    project = tmp_path / "p"
    manifest = {"functions": [fn("ok"), {**fn("gone"), "code": "./missing"}, {**fn("climate"), "memory_mb": 1},
                              {**fn("typo"), "handler": "index.nothere"}]}  # fmt: skip
    path = write_project(project, manifest, {"ok": ECHO, "climate": ECHO, "typo": ECHO})
    # No gateway is needed to find these; none is reachable here.
    done = run("deploy", str(path), env=clean_env(tmp_path, EDGEFC_GATEWAY="http://127.0.0.1:1", EDGEFC_TOKEN="t"))
    assert done.returncode == 2, done
    err = done.stderr.decode()
    assert err.startswith("error: ValidationError: invalid input (3 problems)\n"), err
    assert "  functions[1] (gone).code: './missing' does not exist" in err, err
    assert "  functions[2] (climate).memory_mb: must be between 16 and 16384, got 1" in err, err
    assert "  functions[3] (typo).handler: index.py defines no top-level function 'nothere'" in err, err


def test_the_gateway_s_problems_use_the_same_header_and_names(gateway: GatewayProcess, tmp_path: Path) -> None:
    # Valid to the CLI; only the gateway knows its isolation can't place a container here.
    path = write_project(tmp_path / "p", {"functions": [fn("ok"), fn("boxed", isolation="container")]},
                         {"ok": ECHO, "boxed": ECHO})  # fmt: skip
    done = run("deploy", str(path), env=gw_env(gateway, tmp_path))
    assert done.returncode == 2, done
    err = done.stderr.decode()
    assert err.startswith("error: ValidationError: invalid input (1 problem)\n"), err
    assert "  functions[1] (boxed).isolation: container isolation is not available" in err, err

