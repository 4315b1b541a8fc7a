"""POST /v1/messages, queues and dead letters over HTTP, and the CLI commands that call them."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from edgefc.api.app import routed_app
from edgefc.api.messages import MAX_PAYLOAD_BYTES
from edgefc.api.messages import router as messages_api
from edgefc.cli.publish import publish
from edgefc.cli.queues import deadletters, queues
from edgefc.router.message import Message
from edgefc.router.queue import DurableQueue
from edgefc.router.router import Router
from edgefc.router.routes import Route, RouteTable
from tests.router.helpers import wait_async, wait_for


class Sink:
    """A target function that fails until fixed, recording what it took."""

    def __init__(self) -> None:
        self.fixed = True
        self.got: list[Message] = []

    async def __call__(self, name: str, message: Message) -> None:
        if not self.fixed:
            raise RuntimeError("broken")
        self.got.append(message)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    sink = Sink()
    queue = DurableQueue(tmp_path / "q.db", max_bytes=100_000, max_retries=0, backoff_base=0.01)
    table = RouteTable(
        [Route("r", "api", "#", "function:sink", 1), Route("r0", "api", "fast/#", "function:fast")]
    )
    router = Router(table, queue=queue, deliver_function=sink)
    await router.start()
    app = routed_app([messages_api], SimpleNamespace(router=router, queue=queue))  # the gateway's error rendering
    yield SimpleNamespace(app=app, router=router, queue=queue, sink=sink)
    await router.close()
    queue.close()


async def test_post_message_is_routed_and_bad_input_is_refused(gateway: SimpleNamespace) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.app), base_url="http://gw"
    ) as http:
        ok = await http.post("/v1/messages", json={"topic": "a/b", "payload": "hi", "qos": 1})
        assert ok.status_code == 202 and len(ok.json()["id"]) == 32
        raw = base64.b64encode(b"\xff\x00").decode()
        binary = await http.post(
            "/v1/messages", json={"topic": "a/c", "payload": raw, "payloadEncoding": "base64"}
        )
        assert binary.status_code == 202
        await wait_for(lambda: len(gateway.sink.got) == 2, 5, "both delivered")
        assert [(m.topic, m.payload, m.source) for m in gateway.sink.got] == [
            ("a/b", b"hi", "api"),
            ("a/c", b"\xff\x00", "api"),
        ]
        bad = {
            "wildcard": ({"topic": "a/+", "payload": "x"}, 422),
            "qos": ({"topic": "a", "payload": "x", "qos": 2}, 422),
            "extra": ({"topic": "a", "payload": "x", "colour": 1}, 422),
            "base64": ({"topic": "a", "payload": "!!", "payloadEncoding": "base64"}, 422),
            "big": ({"topic": "a", "payload": "x" * (MAX_PAYLOAD_BYTES + 1)}, 413),
        }
        for case, (body, status) in bad.items():
            answer = await http.post("/v1/messages", json=body)
            assert answer.status_code == status, case
            assert answer.json()["error"]["type"] in ("ValidationError", "PayloadTooLarge"), case
        not_json = await http.post("/v1/messages", content=b"{nope")
        assert not_json.status_code == 400


async def test_full_queue_answers_503_and_keeps_what_it_accepted(gateway: SimpleNamespace) -> None:
    gateway.sink.fixed = False  # nothing drains: failures become dead letters, which still count
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.app), base_url="http://gw"
    ) as http:
        answers = [
            await http.post("/v1/messages", json={"topic": "q", "payload": "x" * 20_000, "qos": 1})
            for _ in range(8)
        ]
        codes = [a.status_code for a in answers]
        assert codes[0] == 202 and codes[-1] == 503 and answers[-1].json()["error"]["type"] == "QueueFull"
        accepted = codes.count(202)
        await wait_async(lambda: _dead(gateway.queue, accepted), 5, "the accepted ones as dead letters")
        letters = (await http.get("/v1/deadletters")).json()["deadletters"]
        assert len(letters) == accepted and letters[0]["target"] == "function:sink" and letters[0]["error"]


async def _dead(queue: DurableQueue, n: int) -> bool:
    return (await queue.astats())["deadletters"] >= n


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_cli_publish_queues_and_replay(gateway: SimpleNamespace) -> None:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(gateway.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, 10, "uvicorn")
    runner = CliRunner()
    env = {"EDGEFC_GATEWAY": f"http://127.0.0.1:{port}", "EDGEFC_TOKEN": "t"}

    async def cli(command: object, *args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(runner.invoke, command, list(args), env=env)
        return result.exit_code, result.output

    try:
        gateway.sink.fixed = False
        code, out = await cli(publish, "a/b", "broken", "--qos", "1")
        assert code == 0 and len(out.strip()) == 32
        await wait_async(lambda: _dead(gateway.queue, 1), 5, "a dead letter")
        code, out = await cli(deadletters)
        assert code == 0 and "function:sink" in out and "RuntimeError" in out
        letter_id = (await gateway.queue.adeadletters())[0].id
        gateway.sink.fixed = True
        code, out = await cli(deadletters, "replay", str(letter_id))
        assert code == 0, out
        await wait_for(
            lambda: [m.payload for m in gateway.sink.got] == [b"broken"], 5, "the replayed message"
        )
        code, out = await cli(deadletters, "replay", "999999")
        assert code == 2 and "NotFound" in out
        code, out = await cli(queues)
        assert code == 0 and "function:sink" in out
        code, out = await cli(publish, "a/+", "x")
        assert code == 2 and "wildcard" in out
    finally:
        server.should_exit = True
        await serving
