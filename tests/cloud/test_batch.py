"""Group commit (``store.Batcher``) and NOTIFY payloads that carry many topics: what a fleet's fan-out relies on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, select

from edgefc.cloud import db
from edgefc.cloud.db import database_url, make_engine
from edgefc.cloud.notify import PAYLOAD_MAX, Notifier
from edgefc.cloud.store import BATCH_MAX, Batcher, Store
from tests.cloud.postgres import PostgresCluster


def _store(url: str) -> Store:
    engine = make_engine(url)
    db.metadata.create_all(engine)
    return Store(engine, Notifier(engine))


async def test_calls_arriving_together_share_transactions_and_get_their_own_results(tmp_path: Path) -> None:
    store = _store(database_url(None, tmp_path))
    sizes: list[int] = []

    def work(conn: Connection, items: list[int]) -> tuple[list[str | Exception], list[str]]:
        sizes.append(len(items))
        conn.execute(insert(db.functions), [{"name": f"f{i}", "runtime": "python3.11", "handler": "index.handler",
                                             "created_at": 0.0} for i in items if i >= 0])  # fmt: skip
        return [ValueError(f"item {i} is negative") if i < 0 else f"done {i}" for i in items], [f"topic:{items[0]}"]

    batcher: Batcher[int, str] = Batcher(store, work)
    items = [*range(600), -1]
    tasks = [asyncio.create_task(batcher.submit(i)) for i in items]
    await asyncio.sleep(0)  # every call has queued
    tasks[7].cancel()  # its client went away: the others are still answered
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    assert isinstance(results[7], asyncio.CancelledError)
    assert [r for i, r in enumerate(results[:600]) if i != 7] == [f"done {i}" for i in range(600) if i != 7]
    assert isinstance(results[600], ValueError) and str(results[600]) == "item -1 is negative"
    assert sum(sizes) == 601 and max(sizes) <= BATCH_MAX and len(sizes) <= 4, sizes  # not one transaction each
    count = await store.run(lambda conn: len(conn.execute(select(db.functions.c.name)).all()))
    assert count == 600  # the cancelled call's row was committed with its batch: accepted is not lost


async def test_a_failed_transaction_fails_its_calls_and_the_next_ones_still_run(tmp_path: Path) -> None:
    store = _store(database_url(None, tmp_path))

    def work(conn: Connection, items: list[str]) -> tuple[list[str | Exception], list[str]]:
        conn.execute(insert(db.functions).values(name="x", runtime="python3.11", handler="index.handler",
                                                 created_at=0.0))  # fmt: skip
        if "boom" in items:
            raise RuntimeError("the database said no")
        return [f"ok {i}" for i in items], []

    batcher: Batcher[str, str] = Batcher(store, work)
    with pytest.raises(RuntimeError, match="the database said no"):
        await asyncio.wait_for(batcher.submit("boom"), 30)
    assert await asyncio.wait_for(batcher.submit("a"), 30) == "ok a"  # rolled back, not stuck busy
    names = await store.run(lambda conn: [r.name for r in conn.execute(select(db.functions.c.name))])
    assert names == ["x"]


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.mark.timeout(90)
async def test_one_commit_announcing_many_topics_wakes_every_waiter_on_another_replica(
    postgres: PostgresCluster,
) -> None:
    engine = make_engine(database_url(postgres.url, Path("/nonexistent")))
    try:
        listener, sender = Notifier(engine), Store(engine, Notifier(engine))
        topics = [f"events:gw-{i:012x}" for i in range(1000)]
        assert sum(len(t) + 1 for t in topics) > 2 * PAYLOAD_MAX  # more than one NOTIFY's worth
        async with asyncio.TaskGroup() as group:
            follow = group.create_task(listener.run())
            await asyncio.wait_for(listener.listening.wait(), 30)
            with contextlib.ExitStack() as stack:
                waiters = [stack.enter_context(listener.subscribe(topic)) for topic in topics]
                await sender.run(lambda conn: None, notify=topics)
                woken = await asyncio.wait_for(asyncio.gather(*(w.wait(30) for w in waiters)), 40)
            follow.cancel()
        assert all(woken)
    finally:
        engine.dispose()
