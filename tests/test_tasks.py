"""The task group: nothing a task dies of is lost; services restart with backoff or fail the group loudly."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from edgefc.backoff import Backoff, delay
from edgefc.tasks import TaskGroup


async def test_a_failed_task_is_logged_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    group = TaskGroup("g")

    async def boom() -> None:
        raise ValueError("bad")

    task = group.spawn(boom(), "worker-1")
    with pytest.raises(ValueError):
        await task
    await asyncio.sleep(0)
    assert any("worker-1" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    await group.aclose()


async def test_a_service_that_dies_is_restarted() -> None:
    group = TaskGroup("g")
    runs = 0
    third = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third.set()
            await asyncio.Event().wait()
        raise RuntimeError("died")

    group.service(flaky, "flaky", backoff=Backoff(first=0.01, cap=0.02))
    await asyncio.wait_for(third.wait(), 5)
    assert runs == 3 and not group.failed.is_set()
    await group.aclose()


async def test_a_service_that_cannot_restart_fails_the_root_from_a_child() -> None:
    root = TaskGroup("root")
    child = root.child("part")

    async def fatal() -> None:
        raise RuntimeError("gone")

    child.service(fatal, "reader", restart=False)
    await asyncio.wait_for(root.failed.wait(), 5)
    assert isinstance(root.error, RuntimeError) and "gone" in str(root.error)
    await root.aclose()
    assert child.closed and len(root) == 0


async def test_close_cancels_everything_and_refuses_new_tasks() -> None:
    group = TaskGroup("g")
    child = group.child("c")
    tasks = [group.spawn(asyncio.Event().wait(), "a"), child.spawn(asyncio.Event().wait(), "b")]
    await group.aclose()
    assert all(t.cancelled() for t in tasks)
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        group.spawn(coro, "late")


def test_backoff_doubles_jitters_and_caps() -> None:
    assert [delay(n, first=0.1, cap=1.0, jitter=0.0) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    rng = random.Random(5)
    values = [delay(3, first=1.0, cap=100.0, jitter=0.2, rng=rng) for _ in range(200)]
    assert all(3.2 <= v <= 4.8 for v in values) and max(values) - min(values) > 0.5
    assert delay(10_000, first=0.1, cap=60.0, jitter=0.5) <= 60.0
    backoff = Backoff(first=0.5, cap=2.0, jitter=0.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next() == 0.5
    with pytest.raises(ValueError):
        delay(0, first=1.0, cap=1.0)


async def test_a_cancelled_child_leaves_its_parent_once_its_tasks_ended() -> None:
    root = TaskGroup("root")
    child = root.child("instance")
    task = child.spawn(asyncio.Event().wait(), "call")
    child.cancel()
    assert len(root) == 1  # the parent still knows the task until it has ended
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert len(root) == 0 and child.closed
    await root.aclose()
