"""What a function manager needs from the rest of the gateway, as narrow interfaces.

The invoker (:mod:`edgefc.invoker`) implements both: ``Events`` is its events sink (metrics, perf, logs,
instance listeners), ``Calls`` routes the SDK calls a function's code makes.
"""

from __future__ import annotations

from typing import Any, Protocol


class Events(Protocol):
    """Where a manager reports what it observes. None of these may raise."""

    def log(self, function: str, instance_id: str, frame: dict[str, Any]) -> None:
        """A log line of the function (a worker's ``log`` frame, or the gateway's note about the function)."""

    def invocation(self, function: str, trigger: str, outcome: str, seconds: float, cold: bool) -> None: ...

    def cold_start(self, function: str, seconds: float) -> None: ...

    def restart(self, function: str, reason: str) -> None:
        """An instance ended without being asked to (``crash``, ``oom``, ``timeout``, ``exited``, ``init_error``)."""

    def instance_event(self, function: str, instance_id: str, event: str) -> None:
        """An instance became ``ready`` or ended (``exit``)."""


class Calls(Protocol):
    """Serves the SDK calls of function code."""

    async def call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        """Raises EdgefcError, which goes back to the caller as its error."""
