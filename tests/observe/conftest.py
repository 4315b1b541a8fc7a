"""Fixtures of the observe tests: the real store, stats, metrics and perf behind a small app, in-process or served."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from edgefc.observe.logs import LogStore
from edgefc.observe.metrics import Metrics
from edgefc.observe.perf import PerfTracker
from edgefc.observe.stats import InstanceFigures, StatsCollector

from .harness import State, make_app


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[State]:
    logs = LogStore(tmp_path / "logs.db")
    await logs.start()
    figures = {"alarm": [InstanceFigures("alarm-1", 123, 40_000_000, 128 * 1024 * 1024, 1.0)]}
    stats = StatsCollector(lambda: figures, tmp_path, interval_s=3600)
    await stats.start()
    yield State(logs, stats, Metrics(), PerfTracker())
    await stats.close()
    await logs.close()


@pytest.fixture
async def server_url(state: State) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(make_app(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task
    sock.close()
