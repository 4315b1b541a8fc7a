"""The e2e harness's ``gateway`` fixture: a real gateway with the process sandbox."""

from __future__ import annotations

from tests.e2e.conftest import gateway

__all__ = ["gateway"]
