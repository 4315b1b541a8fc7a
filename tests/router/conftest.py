"""Router test fixtures: a real Mosquitto per test on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefc.router.broker import ManagedBroker
from tests.conftest import need_binary
from tests.router.helpers import free_port


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[ManagedBroker]:
    need_binary("mosquitto")
    managed = ManagedBroker(f"127.0.0.1:{free_port()}", tmp_path / "broker")
    await managed.start()
    yield managed
    await managed.stop()


@pytest.fixture
async def cloud_broker(tmp_path: Path) -> AsyncIterator[ManagedBroker]:
    need_binary("mosquitto")
    managed = ManagedBroker(f"127.0.0.1:{free_port()}", tmp_path / "cloud")
    await managed.start()
    yield managed
    await managed.stop()
