"""What a function manager runs (its plan) and the states it shows (CONTRACT §4 function status)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefc.config.manifest import Mode
from edgefc.sandbox.base import ContainerSpec, InstanceSpec

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

    def instance_spec(self, instance_id: str, key: str, socket_path: Path) -> InstanceSpec:
        """What the sandbox needs to start one instance of this function."""
        return InstanceSpec(
            instance_id=instance_id, function=self.name, code_dir=self.code_dir,
            env={**self.env, "FUNCTION_NAME": self.name}, memory_mb=self.memory_mb,
            socket_path=socket_path, key=key, container=self.container, runtime=self.runtime,
        )  # fmt: skip

    def init_frame(self) -> dict[str, Any]:
        """The body of the ``init`` frame a new worker gets (worker protocol)."""
        return {
            "function": {"name": self.name, "handler": self.handler, "memory": self.memory_mb, "timeout": self.timeout_s,
                         "version": self.version, "initializer": self.initializer},
            "config": self.config, "max_concurrency": self.max_concurrency,
        }  # fmt: skip
