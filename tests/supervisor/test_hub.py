"""The worker hub: only an expected instance with its key gets through, and the hub owns what it accepted."""

from __future__ import annotations

import asyncio

from edgefc.worker.protocol import encode
from tests.supervisor.rig import Rig


async def _hello(rig: Rig, instance: str, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(rig.hub.socket_path))
    writer.write(encode({"t": "hello", "instance": instance, "key": key, "pid": 1}))
    await writer.drain()
    return reader, writer


async def test_a_wrong_key_or_unknown_instance_is_refused(rig: Rig) -> None:
    expected = rig.hub.expect("fn-1", "right")
    for instance, key in (("fn-1", "wrong"), ("fn-2", "right")):
        reader, writer = await _hello(rig, instance, key)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us
        writer.close()
    assert not expected.done()
    rig.hub.forget("fn-1")
    assert expected.cancelled()


async def test_the_expected_instance_is_handed_over_once_and_closed_when_forgotten(rig: Rig) -> None:
    expected = rig.hub.expect("fn-1", "key")
    reader, writer = await _hello(rig, "fn-1", "key")
    _, server_writer = await asyncio.wait_for(expected, 5)
    again_reader, again_writer = await _hello(rig, "fn-1", "key")  # a second connection for the same instance
    assert await asyncio.wait_for(again_reader.read(), 5) == b""
    again_writer.close()
    rig.hub.forget("fn-1")  # nobody claimed it: the hub closes it
    assert server_writer.is_closing()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
