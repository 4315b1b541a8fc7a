"""Shared test helpers: ``need`` skips a test for a missing system part, or fails it under EDGEFC_REQUIRE_ALL=1."""

from __future__ import annotations

import os
import shutil

import pytest

# Many end-to-end tests have their functions write side files into the test's tmp_path, which a confined process
# worker (its own user, the host's /tmp hidden) cannot reach: they run unconfined. tests/sandbox/
# test_process_confine.py clears this for the gateways it starts, so confinement itself stays tested.
os.environ.setdefault("EDGEFC_UNCONFINED_WORKERS", "1")


def need(condition: bool, what: str) -> None:
    """Skip unless ``condition``; with EDGEFC_REQUIRE_ALL=1 (CI) fail instead, so nothing is skipped silently."""
    if condition:
        return
    if os.environ.get("EDGEFC_REQUIRE_ALL") == "1":
        pytest.fail(f"required system part missing: {what}")
    pytest.skip(f"missing: {what}")


def need_root() -> None:
    need(os.geteuid() == 0, "root")


def need_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    need(path is not None, f"the {name} binary")
    assert path is not None
    return path
