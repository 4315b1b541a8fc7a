from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.harness import AgentGatewayProcess, CloudProcess


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudProcess]:
    """A cloud on SQLite in its own data dir."""
    process = CloudProcess(tmp_path / "cloud").start()
    yield process
    assert process.stop() == 0


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[object]:
    """Start gateways with the agent: ``make_gateway(cloud_url, instance, token, name)``; all stopped after."""
    started: list[AgentGatewayProcess] = []

    def make(cloud_url: str, instance: str, token: str, name: str = "gw", **options: Any) -> AgentGatewayProcess:
        gw = AgentGatewayProcess(tmp_path / name, cloud_url=cloud_url, instance=instance, token=token, **options).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()
