from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.gateway_harness import GatewayProcess


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A started gateway with the process sandbox; stopped afterwards."""
    gw = GatewayProcess(tmp_path / "data").start()
    yield gw
    gw.stop()
