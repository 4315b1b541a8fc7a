"""``edgefc init`` keeps the user's manifest text, and every template deploys and does what it says."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import yaml

from edgefc.cli.scaffold import add_function, scaffold
from edgefc.cli.templates import PYTHON
from edgefc.errors import ValidationError
from tests.cli.harness import clean_env, gw_env, run
from tests.e2e.gateway_harness import GatewayProcess

USER_TEXT = """\
# Plant 4, line 2. Ask Ana before changing timeouts.
version: "2024.05"
functions:
    -   name: climate          # the old one
        code: './functions/climate'
        handler: index.handler
        env: {SITE: "north", LEVEL: '3'}

# Routes come last.
routes: []
"""


def test_init_keeps_comments_quotes_and_layout(tmp_path: Path) -> None:
    (tmp_path / "deployment.yaml").write_text(USER_TEXT)
    done = run("init", "mine", "--dir", str(tmp_path), env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "deployment.yaml").read_text()
    added = [line for line in text.splitlines() if line not in USER_TEXT.splitlines()]
    # Every line the user wrote is still there, in order, and the only new lines are the new entry.
    kept = [line for line in text.splitlines() if line in USER_TEXT.splitlines()]
    assert kept == USER_TEXT.splitlines(), text
    assert added[0] == "    - name: mine" and all(line.startswith("      ") for line in added[1:]), added
    names = [f["name"] for f in yaml.safe_load(text)["functions"]]
    assert names == ["climate", "mine"]


@pytest.mark.parametrize("text", ["", "version: x\n", "functions:\n", "functions: []\n# end\n",
                                  "functions: [{name: a, handler: index.handler}]\n"])  # fmt: skip
def test_add_function_to_any_shape_of_manifest(text: str) -> None:
    entry = {"name": "new", "handler": "index.handler"}
    out = add_function(text, entry, source="d.yaml")
    before = yaml.safe_load(text) or {}
    after = yaml.safe_load(out)
    assert after["functions"] == [*(before.get("functions") or []), entry]
    assert {k: v for k, v in after.items() if k != "functions"} == {k: v for k, v in before.items() if k != "functions"}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line in out.splitlines()


def test_add_function_refuses_what_it_cannot_edit() -> None:
    with pytest.raises(ValidationError, match="already has a function named 'a'"):
        add_function("functions:\n  - {name: a, handler: i.h}\n", {"name": "a"}, source="d.yaml")
    with pytest.raises(ValidationError, match="not a YAML mapping"):
        add_function("- a\n- b\n", {"name": "a"}, source="d.yaml")
    with pytest.raises(ValidationError, match="invalid YAML"):
        add_function("functions: [\n", {"name": "a"}, source="d.yaml")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_template_deploys_and_runs(gateway: GatewayProcess, tmp_path: Path) -> None:
    project = tmp_path / "project"
    env = gw_env(gateway, tmp_path)
    done = run("init", "ondemand", "--template", "on-demand", "--dir", str(project), env=env)
    assert done.returncode == 0 and b"next: edgefc deploy" in done.stdout, done
    for template in PYTHON:  # the command's own path is shown above; the rest in-process, to save seconds
        if template != "on-demand":
            scaffold(project, template.replace("-", ""), template)
    manifest = project / "deployment.yaml"
    port = _free_port()
    manifest.write_text(manifest.read_text().replace("PORT: '8080'", f"PORT: '{port}'"))
    deployed = run("deploy", str(manifest), env=env)
    assert deployed.returncode == 0, deployed.stderr

    def invoke(name: str, data: str = "") -> object:
        answer = gateway.invoke(name, data.encode())
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert invoke("ondemand", '{"name":"edge"}') == {"hello": "edge"}
    assert invoke("app", '{"topic":"t","payload":{"t":31}}') == {"seen": {"t": 31}, "by": "app"}
    timer = invoke("timer", '{"triggerTime":"2026-01-01T00:00:00Z"}')
    assert timer == {"fired": "2026-01-01T00:00:00Z", "payload": None}
    assert gateway.status("timer")["schedule"]["next_fire"]
    for name in ("continuous", "driver", "http"):
        gateway.wait_for(lambda n=name: gateway.status(n)["state"] == "running", what=f"{name} running")
    assert invoke("driver") == {"devices": []}
    assert "ticks" in invoke("continuous")  # type: ignore[operator]
    answer = gateway.wait_for(lambda: _get(f"http://127.0.0.1:{port}/x"), what="the http template answering")
    assert answer == {"hello": "from http", "path": "/x"}


def _get(url: str) -> dict | None:  # type: ignore[type-arg]
    try:
        return httpx.get(url, timeout=2).json()  # type: ignore[no-any-return]
    except httpx.HTTPError:
        return None


def test_init_refuses_an_unknown_template(tmp_path: Path) -> None:
    done = run("init", "x", "--template", "lambda", "--dir", str(tmp_path), env=clean_env(tmp_path))
    assert done.returncode == 2 and b"lambda" in done.stderr
    assert not (tmp_path / "deployment.yaml").exists()
