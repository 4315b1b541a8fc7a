"""The durable queue: order, retries with backoff, dead letters, replay, the full policy, crash safety."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edgefc.errors import NotFound, QueueFull
from edgefc.router.message import Message, SourceType
from edgefc.router.queue import DurableQueue, FailOutcome


def _msg(n: int, topic: str = "t") -> Message:
    return Message(topic, f"m{n}".encode(), SourceType.API, "api", 1)


def _open(path: Path, **kwargs: float) -> DurableQueue:
    options = {"max_bytes": 1_000_000, "max_retries": 2, "backoff_base": 0.05, "backoff_max": 0.2, **kwargs}
    return DurableQueue(path, **options)  # type: ignore[arg-type]


def test_lease_keeps_order_per_target_and_ack_removes(tmp_path: Path) -> None:
    queue = _open(tmp_path / "q.db")
    for n in range(5):
        queue.put("function:a", _msg(n))
        queue.put("function:b", _msg(100 + n))
    first, _ = queue.lease("function:a", limit=3)
    assert [m.message.payload for m in first] == [b"m0", b"m1", b"m2"]
    rest, _ = queue.lease("function:a", limit=10)  # leased ones are not handed out twice
    assert [m.message.payload for m in rest] == [b"m3", b"m4"]
    for item in first + rest:
        queue.ack(item.id)
    assert queue.lease("function:a")[0] == []
    assert queue.stats()["targets"] == {"function:b": 5}
    queue.close()


def _lease_head(queue: DurableQueue, target: str) -> tuple[int, int]:
    """Wait out the head's backoff (the queue says how long), lease it and give the rest back."""
    leased, wait = queue.lease(target)
    if not leased:
        assert wait is not None
        time.sleep(wait)  # a sync test of backoff timing: the wait is the queue's own answer
        leased, _ = queue.lease(target)
    queue.release([item.id for item in leased[1:]])
    return leased[0].id, leased[0].attempts


def test_failure_backs_off_holds_the_line_and_ends_in_dead_letters(tmp_path: Path) -> None:
    queue = _open(tmp_path / "q.db")
    head = queue.put("cloud", _msg(1))
    queue.put("cloud", _msg(2))
    assert _lease_head(queue, "cloud") == (head, 0)
    assert queue.fail(head, "broker down") is FailOutcome.RETRY
    leased, wait = queue.lease("cloud")
    assert leased == [] and wait is not None and 0.02 <= wait <= 0.06  # behind the head: 0.05 s ± 20 % (edgefc.backoff)
    assert _lease_head(queue, "cloud") == (head, 1)
    assert queue.fail(head, "still down") is FailOutcome.RETRY
    assert _lease_head(queue, "cloud") == (head, 2)
    assert queue.fail(head, "gave up") is FailOutcome.DEAD
    [letter] = queue.deadletters()
    assert (letter.id, letter.target, letter.attempts, letter.error) == (head, "cloud", 3, "gave up")
    assert letter.message.payload == b"m1"
    [next_item], _ = queue.lease("cloud")
    assert next_item.message.payload == b"m2"  # the line moves on once the head is a dead letter
    new_id = queue.replay(head)
    assert queue.deadletters() == []
    queue.ack(next_item.id)
    [replayed], _ = queue.lease("cloud")
    assert replayed.id == new_id and replayed.attempts == 0 and replayed.message == letter.message
    with pytest.raises(NotFound):
        queue.replay(head)
    queue.close()


def test_full_queue_refuses_new_messages_and_keeps_accepted_ones(tmp_path: Path) -> None:
    queue = _open(tmp_path / "q.db", max_bytes=2000)
    accepted = []
    with pytest.raises(QueueFull) as refused:
        for _ in range(100):
            accepted.append(queue.put("function:a", Message("t", b"x" * 300, SourceType.API)))
    assert 1 <= len(accepted) < 100 and refused.value.http_status == 503
    assert queue.stats()["targets"] == {"function:a": len(accepted)}
    [item, *others], _ = queue.lease("function:a")
    queue.ack(item.id)
    queue.put("function:a", Message("t", b"x" * 300, SourceType.API))  # room again after a delivery
    queue.release([o.id for o in others])
    assert queue.stats()["targets"] == {"function:a": len(accepted)}
    queue.close()


def test_reopened_queue_has_everything_not_acked(tmp_path: Path) -> None:
    queue = _open(tmp_path / "q.db")
    ids = [queue.put("function:a", _msg(n)) for n in range(10)]
    leased, _ = queue.lease("function:a", limit=4)
    queue.ack(leased[0].id)
    queue.close()  # leases die with the process, acks and puts do not
    reopened = _open(tmp_path / "q.db")
    items, _ = reopened.lease("function:a", limit=100)
    assert [i.id for i in items] == ids[1:]
    assert reopened.stats()["bytes"] == sum(len(b"m0") + 1 + 128 for _ in ids[1:])
    reopened.close()


async def test_concurrent_async_puts_share_commits_and_keep_call_order(tmp_path: Path) -> None:
    queue = _open(tmp_path / "q.db", max_bytes=10_000_000)
    ids = await asyncio.gather(*(queue.aput("function:a", _msg(n)) for n in range(500)))
    assert ids == sorted(ids)
    items, _ = await queue.alease("function:a", limit=1000)
    assert [i.message.payload for i in items] == [f"m{n}".encode() for n in range(500)]
    await asyncio.gather(*(queue.aack(i.id) for i in items))
    assert (await queue.astats())["depth"] == 0
    with pytest.raises(QueueFull):
        await queue.aput("function:a", Message("t", b"x" * 10_000_001, SourceType.API))
    queue.close()


def test_a_brokers_second_copy_of_a_committed_message_is_recognised_across_a_reopen(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.db", max_bytes=10_000_000, max_retries=3)
    first = Message("dev/t", b"1", SourceType.MQTT, "", 1, "a" * 32)
    api = Message("dev/t", b"1", SourceType.API, "api", 1, "b" * 32)
    queue.put_many([("function:f", first), ("cloud", first)])
    queue.put("cloud", api)
    assert queue.seen_inbound(first.id) and not queue.seen_inbound(api.id)  # only what came from a broker
    queue.close()
    reopened = DurableQueue(tmp_path / "q.db", max_bytes=10_000_000, max_retries=3)
    assert reopened.seen_inbound(first.id)  # remembered across a restart, as the broker's session is
    reopened.close()


def test_an_inbound_id_is_not_remembered_when_its_transaction_fails(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.db", max_bytes=300, max_retries=3)
    big = Message("dev/t", b"x" * 400, SourceType.MQTT, "", 1, "c" * 32)
    with pytest.raises(QueueFull):
        queue.put("function:f", big)
    assert not queue.seen_inbound(big.id)  # else its redelivery would be dropped: a loss
    queue.close()
