"""What a function manager runs (its plan) and the states it shows (CONTRACT §4 function status)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefc.config.manifest import Mode
from edgefc.sandbox.base import ContainerSpec

__all__ = ["FunctionPlan", "FunctionState", "Mode"]


class FunctionState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    BACKOFF = "backoff"
    FAILED = "failed"


@dataclass(frozen=True)
class FunctionPlan:
    """The validated settings of one function and where its code is."""

    name: str
    handler: str
    initializer: str | None
    mode: Mode
    memory_mb: int
    timeout_s: float
    idle_timeout_s: float
    max_concurrency: int
    max_instances: int
    max_queue: int
    env: dict[str, str]
    config: Any
    code_dir: Path
    code_sha: str
    version: str
    container: ContainerSpec
    fingerprint: str  # equal fingerprints = unchanged function across deployments
    isolation: str = "process"  # process | container: the sandbox that runs it
    restart_backoff_max_s: float = 60.0  # continuous: the longest wait between two restarts
    runtime: str = "python3"  # python3 | nodejs18 | nodejs20 | nodejs22: which worker the sandbox starts
