"""The function manager with real workers (the process sandbox's fork server) over the real worker socket.

Failures show as failing asserts: every wait has its own deadline well inside the test timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgefc.config.manifest import Mode
from edgefc.errors import Busy, FunctionError, Unavailable
from edgefc.supervisor.plan import FunctionState
from tests.supervisor.rig import Rig

ECHO = """
def handler(event, context):
    return event
"""

BEHAVE = """
import os, time

def handler(event, context):
    if event == b"raise":
        raise ValueError("boom")
    if event == b"exit":
        os._exit(3)
    if event.startswith(b"sleep"):
        time.sleep(float(event[5:]))
    return b"ok:" + event
"""

SDK = """
import edgefc.sdk as fc

def handler(event, context):
    return fc.publish("t/x", event, qos=1) or b"published"  # QoS 0 would not wait for the refusal
"""

CONTINUOUS = """
import os, time

def init(context):
    if os.path.exists(os.environ["CRASH_FLAG"]):
        raise RuntimeError("told to fail")
    time.sleep(float(os.environ.get("INIT_SLEEP", "0")))

def handler(event, context):
    if event == b"exit":
        os._exit(3)
    return str(os.getpid()).encode()
"""


async def test_invoke_round_trip_counts_and_cold_start(rig: Rig) -> None:
    manager = rig.manager(ECHO)
    await manager.start()
    assert await manager.invoke(b"hello") == b"hello"
    assert await manager.invoke(b"again") == b"again"
    status = manager.status()
    assert status["invocations"] == 2 and status["cold_starts"] == 1 and status["errors"] == 0
    assert manager.state is FunctionState.IDLE
    assert [o for _, _, o in rig.events.invocations] == ["success", "success"]


async def test_a_handler_exception_is_handled_with_its_stack(rig: Rig) -> None:
    manager = rig.manager(BEHAVE)
    await manager.start()
    with pytest.raises(FunctionError) as caught:
        await manager.invoke(b"raise")
    assert caught.value.type == "Handled" and "boom" in caught.value.message
    assert any("ValueError" in line for line in caught.value.stack)
    assert await manager.invoke(b"fine") == b"ok:fine"  # the instance survives a handled error


async def test_a_timeout_kills_the_instance_and_notes_a_hint_in_the_function_log(rig: Rig) -> None:
    manager = rig.manager(BEHAVE, timeout_s=0.3)
    await manager.start()
    await manager.invoke(b"warm")
    first = manager.runners()[0].instance.pid
    with pytest.raises(FunctionError) as caught:
        await manager.invoke(b"sleep10")
    assert caught.value.type == "Timeout" and caught.value.http_status == 504
    assert any("raise timeout_s (0.3)" in n for n in rig.events.notes()), rig.events.notes()
    assert await manager.invoke(b"next") == b"ok:next"
    assert manager.runners()[0].instance.pid != first
    await rig.until(lambda: ("fn", "timeout") in rig.events.restarts, "the timeout exit reported")
    assert manager.counts["timeouts"] == 1


async def test_a_full_queue_answers_busy(rig: Rig) -> None:
    manager = rig.manager(BEHAVE, max_queue=0)
    await manager.start()
    await manager.invoke(b"warm")
    slow = asyncio.create_task(manager.invoke(b"sleep0.5"))
    await rig.until(lambda: manager.runners()[0].inflight == 1, "the slow event in flight")
    with pytest.raises(Busy):
        await manager.invoke(b"more")
    assert await slow == b"ok:sleep0.5"
    assert ("fn", "invoke", "busy") in rig.events.invocations


async def test_sdk_calls_reach_the_calls_port(rig: Rig) -> None:
    manager = rig.manager(SDK)
    await manager.start()
    with pytest.raises(FunctionError) as caught:
        await manager.invoke(b"x")  # the recorder refuses "publish": the error goes back into the handler
    assert "unknown operation 'publish'" in caught.value.message
    assert rig.events.calls and rig.events.calls[0][:2] == ("fn", "publish")


async def test_close_refuses_waiting_events_and_stops_every_worker(rig: Rig) -> None:
    manager = rig.manager(BEHAVE)
    await manager.start()
    await manager.invoke(b"warm")
    slow = asyncio.create_task(manager.invoke(b"sleep0.3"))
    waiting = asyncio.create_task(manager.invoke(b"queued"))
    await rig.until(lambda: manager.status()["queued"] == 1, "one event queued")
    await manager.close(drain=False)
    with pytest.raises(Unavailable):
        await waiting
    assert await slow == b"ok:sleep0.3"  # `stop` lets the worker finish what it runs, within the grace
    assert rig.workers() == []
    with pytest.raises(Unavailable):
        await manager.invoke(b"late")


@pytest.mark.parametrize("where", ["before_fork", "after_fork", "before_ready"])
async def test_a_cancelled_start_leaves_no_worker(rig: Rig, tmp_path: Path, where: str) -> None:
    env = {"CRASH_FLAG": str(tmp_path / "never"), "INIT_SLEEP": "30" if where == "before_ready" else "0"}
    manager = rig.manager(CONTINUOUS, mode=Mode.CONTINUOUS, initializer="index.init", env=env)
    if where == "before_fork":
        rig.sandbox.before.clear()
    elif where == "after_fork":
        rig.sandbox.after.clear()
    starting = asyncio.create_task(manager.start())
    if where == "before_fork":
        await asyncio.wait_for(rig.sandbox.at_before.wait(), 5)
    elif where == "after_fork":
        await asyncio.wait_for(rig.sandbox.at_after.wait(), 5)
        assert len(rig.workers()) == 1
    else:
        await rig.until(lambda: bool(manager.runners()), "the instance made")
    assert manager.state is FunctionState.STARTING
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await rig.until(lambda: rig.workers() == [], "no worker left")
    await rig.until(lambda: manager.runners() == [], "no runner left")
    if where == "before_fork":
        assert rig.sandbox.started == []


async def test_a_start_cancelled_while_the_fork_server_forks_kills_the_fork(rig: Rig, tmp_path: Path) -> None:
    from edgefc.sandbox.base import InstanceSpec
    from tests.supervisor.rig import write_code

    spec = InstanceSpec(instance_id="fn-orphan", function="fn", code_dir=write_code(tmp_path, ECHO), env={},
                        memory_mb=256, socket_path=rig.hub.socket_path, key="k")  # fmt: skip
    starting = asyncio.create_task(rig.inner.start(spec))
    await asyncio.sleep(0)  # the spawn request is written; its pid has not come back
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await rig.until(lambda: not rig.inner._abandoned and not rig.inner._orphans, "the abandoned fork reaped")
    await rig.until(lambda: rig.workers() == [], "no worker left")


async def test_a_cancelled_stop_still_kills_the_worker(rig: Rig) -> None:
    manager = rig.manager(BEHAVE, timeout_s=30)
    await manager.start()
    await manager.invoke(b"warm")
    runner = manager.runners()[0]
    busy = asyncio.create_task(manager.invoke(b"sleep20"))  # the worker finishes it before obeying `stop`
    await rig.until(lambda: runner.inflight == 1, "an event in flight")
    stopping = asyncio.create_task(runner.stop(grace=20))
    await asyncio.sleep(0.1)
    assert runner.instance.returncode is None  # still within its grace
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await rig.until(lambda: runner.instance.returncode is not None, "the worker killed", timeout=6)
    assert runner.instance.returncode == -9
    with pytest.raises(FunctionError):
        await busy


async def test_a_continuous_crash_loop_backs_off_and_never_gives_up(rig: Rig, tmp_path: Path) -> None:
    flag = tmp_path / "crash.flag"
    manager = rig.manager(CONTINUOUS, mode=Mode.CONTINUOUS, initializer="index.init", env={"CRASH_FLAG": str(flag)},
                          restart_backoff_max_s=0.2)  # fmt: skip
    await manager.start()
    assert manager.state is FunctionState.RUNNING
    flag.touch()
    with pytest.raises(FunctionError):
        await manager.invoke(b"exit")
    seen: set[FunctionState] = set()

    def restarted_often() -> bool:
        seen.add(manager.state)
        return manager.restarts >= 8

    await rig.until(restarted_often, "eight restarts", timeout=20)
    assert FunctionState.BACKOFF in seen and FunctionState.FAILED not in seen and FunctionState.STOPPED not in seen
    with pytest.raises(Unavailable, match="backoff"):
        await manager.invoke(b"held?")
    assert sum("restarting in" in n for n in rig.events.notes()) >= 7
    assert all(reason == "init_error" for _, reason in rig.events.restarts[1:])
    flag.unlink()
    await rig.until(lambda: manager.state is FunctionState.RUNNING, "running again", timeout=10)
    assert (await manager.invoke(b"pid")).isdigit()


async def test_the_first_restart_of_a_crash_is_immediate_and_holds_invokes(rig: Rig, tmp_path: Path) -> None:
    manager = rig.manager(CONTINUOUS, mode=Mode.CONTINUOUS, initializer="index.init",
                          env={"CRASH_FLAG": str(tmp_path / "never")})  # fmt: skip
    await manager.start()
    old = await manager.invoke(b"pid")
    with pytest.raises(FunctionError) as caught:
        await manager.invoke(b"exit")
    assert "exit code 3" in caught.value.message
    new = await asyncio.wait_for(manager.invoke(b"pid"), 5)  # held until the new instance is ready
    assert new != old and manager.restarts == 1
    assert manager.last_exit is not None and manager.last_exit["reason"] == "exited"
    assert any("ended unexpectedly (exit code 3)" in n for n in rig.events.notes())
