from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from tests.supervisor.rig import Rig, short_dir


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    root = short_dir()
    r = Rig(root)
    await r.open()
    try:
        yield r
    finally:
        await r.close()
        shutil.rmtree(root, ignore_errors=True)
