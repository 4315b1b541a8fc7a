"""Why an instance ended, and what its function's log says about it (with a hint at the setting to change)."""

from __future__ import annotations

from edgefc.sandbox.base import ExitStatus
from edgefc.supervisor.instance import InstanceState, Runner

REQUESTED = frozenset({"stopped", "idle", "restart", "probe"})  # exits the gateway asked for


def exit_reason(runner: Runner, status: ExitStatus) -> str:
    """``oom``, ``timeout``, one of :data:`REQUESTED`, ``init_error``, ``crash`` (a signal) or ``exited``."""
    if status.oom:
        return "oom"
    if runner.exit_reason in ("timeout", *REQUESTED):
        return runner.exit_reason  # type: ignore[return-value]
    if runner.ready.done() and runner.ready.exception() is not None and runner.state is not InstanceState.READY:
        return "init_error" if status.code >= 0 else "crash"
    return "crash" if status.code < 0 else "exited"


def exit_note(reason: str, instance_id: str, status: ExitStatus, memory_mb: int) -> str | None:
    """The line for the function's own log about an exit it did not ask for (None: noted elsewhere)."""
    how = f"signal {-status.code}" if status.code < 0 else f"exit code {status.code}"
    if reason == "oom":
        return f"instance {instance_id} was killed at its memory limit of {memory_mb} MiB: raise memory_mb ({memory_mb})"
    if reason == "init_error":
        return (f"instance {instance_id} failed to start ({how}): its module could not be imported or its "
                "initializer raised; see the lines above")  # fmt: skip
    if reason == "timeout":
        return None  # noted with the event that timed out
    return f"instance {instance_id} ended unexpectedly ({how}); see the lines above"
