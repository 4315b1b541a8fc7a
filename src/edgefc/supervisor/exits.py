"""Why an instance ended, and what its function's log says about it (with a hint at the setting to change)."""

from __future__ import annotations

from edgefc.errors import FunctionError
from edgefc.sandbox.base import ExitStatus
from edgefc.supervisor.instance import InstanceState, Runner

REQUESTED = frozenset({"stopped", "idle", "restart", "probe"})  # exits the gateway asked for


def exit_reason(runner: Runner, status: ExitStatus) -> str:
    """``oom``, ``timeout``, one of :data:`REQUESTED`, ``init_error`` (a failed start, or a running module body
    that raised), ``result_too_large``, ``crash`` (a signal) or ``exited``."""
    if status.oom:
        return "oom"
    if runner.exit_reason in ("timeout", "init_error", "result_too_large", *REQUESTED):
        return runner.exit_reason  # type: ignore[return-value]
    if runner.ready.done() and runner.ready.exception() is not None and runner.state is not InstanceState.READY:
        return "init_error" if status.code >= 0 else "crash"
    return "crash" if status.code < 0 else "exited"


def exit_note(reason: str, instance_id: str, status: ExitStatus, memory_mb: int,
              body_error: FunctionError | None = None) -> str | None:  # fmt: skip
    """The line for the function's own log about an exit it did not ask for (None: noted elsewhere).

    ``body_error``: what a module body that kept running raised after the instance was ready; its traceback
    goes into the line, so the function's log says why even when the worker's own lines were lost.
    """
    how = f"signal {-status.code}" if status.code < 0 else f"exit code {status.code}"
    if reason == "oom":
        return f"instance {instance_id} was killed at its memory limit of {memory_mb} MiB: raise memory_mb ({memory_mb})"
    if reason == "init_error" and body_error is not None:
        stack = "".join(body_error.stack).rstrip()
        head = (f"instance {instance_id}: its module body raised after the instance was ready "
                f"({body_error.type}: {body_error.message}); it is restarted")  # fmt: skip
        return f"{head}\n{stack}" if stack else head
    if reason == "result_too_large":
        return (f"instance {instance_id} was stopped: it sent a result larger than the gateway accepts "
                "(the worker frame cap, 64 MiB)")  # fmt: skip
    if reason == "init_error":
        return (f"instance {instance_id} failed to start ({how}): its module could not be imported or its "
                "initializer raised; see the lines above")  # fmt: skip
    if reason == "timeout":
        return None  # noted with the event that timed out
    return f"instance {instance_id} ended unexpectedly ({how}); see the lines above"
