"""The composition root: every part opened in order, and a failed start closes exactly what was opened."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import psutil
import pytest

from edgefc.config.gateway import GatewayConfig, load_gateway_config
from edgefc.errors import ValidationError
from edgefc.gateway.core import Gateway
from edgefc.observe.gatewaylog import GatewayLogHandler
from edgefc.observe.stats import StatsCollector
from tests.supervisor.rig import short_dir


def config(data_dir: Path) -> GatewayConfig:
    return load_gateway_config(None, data_dir=str(data_dir), isolation="process", mqtt__broker="off")


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger("edgefc").handlers if isinstance(h, GatewayLogHandler)]


async def test_open_builds_every_part_and_closes_them_all() -> None:
    data = short_dir() / "data"
    before = children()
    async with Gateway.open(config(data)) as gateway:
        assert gateway.hub.socket_path.exists()
        assert children() - before  # the fork server
        assert len(handlers()) == 1
        token = (data / "admin.token").read_text().strip()
        assert gateway.token == token and len(token) == 64
        assert stat.S_IMODE(os.stat(data / "admin.token").st_mode) == 0o600
        assert not [p for p in os.listdir(data) if p.startswith(".admin.token")]  # no temp file left
        assert gateway.status.all() == [] and not gateway.tasks.failed.is_set()
    assert not gateway.hub.socket_path.exists()
    assert children() - before == set()
    assert handlers() == []


async def test_a_failed_start_closes_what_was_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    data = short_dir() / "data"
    before = children()

    async def broken(self: StatsCollector) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(StatsCollector, "start", broken)
    with pytest.raises(OSError, match="disk on fire"):
        async with Gateway.open(config(data)):
            pytest.fail("the gateway must not open")
    assert children() - before == set()  # the fork server went with the failed start
    assert handlers() == []
    assert not (data / "run" / "worker.sock").exists()


@pytest.mark.parametrize("content", ["", "short\n"])
async def test_an_empty_or_short_token_is_refused_naming_the_file(content: str) -> None:
    data = short_dir() / "data"
    data.mkdir(parents=True)
    (data / "admin.token").write_text(content)
    with pytest.raises(ValidationError, match="admin.token"):
        async with Gateway.open(config(data)):
            pytest.fail("the gateway must not open")
    assert (data / "admin.token").read_text() == content  # nothing changed
