"""``edgefc login``: named gateways with tokens in the user's config dir, picked by ``--gateway NAME``."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from tests.cli.harness import ECHO, clean_env, run
from tests.e2e.gateway_harness import GatewayProcess, fn


def test_login_stores_the_gateway_and_commands_use_it(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [fn("f")]}, {"f": ECHO})
    env = clean_env(tmp_path)  # no EDGEFC_* at all, and the folder has no .edgefc: only the stored gateway helps
    work = tmp_path / "elsewhere"
    work.mkdir()

    wrong = run("login", gateway.url, "--name", "plant", "--token-stdin", input=b"wrong\n", env=env, cwd=work)
    assert wrong.returncode == 2 and b"Unauthorized" in wrong.stderr, wrong
    stored = tmp_path / "config" / "edgefc" / "gateways.yaml"
    assert not stored.exists()

    done = run("login", gateway.url, "--name", "plant", "--token-stdin", input=gateway.token.encode() + b"\n",
               env=env, cwd=work)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert yaml.safe_load(stored.read_text())["gateways"]["plant"] == {"url": gateway.url, "token": gateway.token}

    assert run("invoke", "f", "--data", "hi", env=env, cwd=work).stdout == b"hi\n"  # the current gateway
    by_name = run("--gateway", "plant", "invoke", "f", "--data", "named", env=env, cwd=work)
    assert by_name.stdout == b"named\n", by_name.stderr
    by_url = run("--gateway", gateway.url, "invoke", "f", "--data", "url", env=env, cwd=work)
    assert by_url.stdout == b"url\n", by_url.stderr  # a stored URL finds its token too

    completed = run(env={**env, "COMP_WORDS": "edgefc --gateway pl", "COMP_CWORD": "2",
                         "_EDGEFC_COMPLETE": "bash_complete"})  # fmt: skip
    assert completed.stdout.decode().split() == ["plain,plant"], completed  # shell completion knows the names
    listed = run("gateways", env=env).stdout.decode()
    assert "plant" in listed and gateway.url in listed and gateway.token not in listed, listed
    unknown = run("--gateway", "nowhere", "ps", env=env, cwd=work)
    assert unknown.returncode == 2 and b"no gateway named 'nowhere'" in unknown.stderr and b"plant" in unknown.stderr

    assert run("logout", "plant", env=env).returncode == 0
    assert "plant" not in yaml.safe_load(stored.read_text())["gateways"]
