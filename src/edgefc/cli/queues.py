"""``edgefc queues`` and ``edgefc deadletters [list | replay ID | discard ID]``: the router's durable queues."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from edgefc.cli.client import ApiClient, client_from
from edgefc.cli.output import chosen_format, console, dump, normalize, rfc3339


def _client() -> ApiClient:
    """The shared API client, closed when the command ends (so no socket outlives the CLI run)."""
    ctx = click.get_current_context()
    client = client_from(ctx)
    ctx.find_root().call_on_close(client.http.close)
    return client


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def queues(as_json: bool) -> None:
    """Show the router's queues: durable depth, QoS 0 backlog and delivery counts per target."""
    data: dict[str, Any] = _client().json("GET", "/v1/queues")
    fmt = chosen_format(None, as_json=as_json)
    if fmt in ("json", "yaml"):
        click.echo(dump(normalize(data), fmt))
        return
    table = Table(
        title=f"durable queue: {_human_bytes(data['bytes'])} of {_human_bytes(data['max_bytes'])}, "
        f"{data['deadletters']} dead letter(s)"
    )
    for column in ("target", "durable", "memory", "delivered", "failed", "dropped", "dead"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for row in data["targets"]:
        table.add_row(
            row["target"],
            str(row["durable_depth"]),
            str(row["memory_depth"]),
            str(row["delivered"]),
            str(row["failed"]),
            str(row["dropped"]),
            str(row["dead_lettered"]),
        )
    console().print(table)


@click.group("deadletters", invoke_without_command=True)
@click.pass_context
def deadletters(ctx: click.Context) -> None:
    """List dead letters (messages whose delivery failed every retry); see the subcommands to act on them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_deadletters)


@deadletters.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def list_deadletters(limit: int = 100, as_json: bool = False) -> None:
    """List dead letters, oldest first."""
    data = _client().json("GET", "/v1/deadletters", params={"limit": limit})
    fmt = chosen_format(None, as_json=as_json)
    if fmt in ("json", "yaml"):
        click.echo(dump(normalize(data), fmt))
        return
    table = Table(title=f"{len(data['deadletters'])} dead letter(s)")
    for column in ("id", "target", "topic", "attempts", "failed at", "last error"):
        table.add_column(column)
    for letter in data["deadletters"]:
        failed = rfc3339(letter["failed_at"]) or "-"
        table.add_row(
            str(letter["id"]),
            letter["target"],
            letter["topic"],
            str(letter["attempts"]),
            failed,
            letter["error"],
        )
    console().print(table)


@deadletters.command("replay")
@click.argument("deadletter_id", type=int)
def replay(deadletter_id: int) -> None:
    """Put dead letter ID back into its target's queue (exits 2 for an unknown id)."""
    answer = _client().json("POST", f"/v1/deadletters/{deadletter_id}/replay")
    click.echo(f"replayed as queue entry {answer['id']}")


@deadletters.command("discard")
@click.argument("deadletter_id", type=int)
def discard(deadletter_id: int) -> None:
    """Delete dead letter ID for good (exits 2 for an unknown id)."""
    _client().json("DELETE", f"/v1/deadletters/{deadletter_id}")
    click.echo(f"discarded dead letter {deadletter_id}")
