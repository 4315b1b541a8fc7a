"""``edgefc publish TOPIC PAYLOAD [--qos 0|1]``: put a message into the gateway's router (source ``api``)."""

from __future__ import annotations

import base64
import sys

import click

from edgefc.cli.client import ApiClient, client_from


def _client() -> ApiClient:
    """The shared API client, closed when the command ends (so no socket outlives the CLI run)."""
    ctx = click.get_current_context()
    client = client_from(ctx)
    ctx.find_root().call_on_close(client.http.close)
    return client


@click.command("publish")
@click.argument("topic")
@click.argument("payload")
@click.option("--qos", type=click.IntRange(0, 1), default=0, show_default=True, help="1 = durably queued")
def publish(topic: str, payload: str, qos: int) -> None:
    """Publish PAYLOAD on TOPIC through the gateway's routes ('-' reads the payload from stdin).

    Exits 2 for bad input (bad topic, payload over the cap), 1 when the queue is full, 3 when unreachable.
    """
    body: dict[str, object] = {"topic": topic, "qos": qos}
    if payload == "-":
        raw = sys.stdin.buffer.read()
        try:
            body["payload"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            body["payload"] = base64.b64encode(raw).decode("ascii")
            body["payloadEncoding"] = "base64"
    else:
        body["payload"] = payload
    answer = _client().json("POST", "/v1/messages", json=body)
    click.echo(answer["id"])
