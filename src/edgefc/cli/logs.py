"""``edgefc logs NAME``: query or follow a function's log through ``GET /v1/functions/{name}/logs``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from edgefc.cli.client import client_from
from edgefc.cli.output import chosen_format
from edgefc.cli.output import console as output_console

LEVEL_STYLES = {
    "debug": "dim",
    "info": "",
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
}
INDENT = "    "


def format_entry(entry: dict[str, Any]) -> Text:
    """One entry as a line: time, level, request id, message; later lines of the message indented."""
    level = str(entry.get("level", "info"))
    style = LEVEL_STYLES.get(level, "")
    stamp = str(entry.get("time", ""))
    if len(stamp) > 24 and stamp.endswith("Z"):
        stamp = stamp[:23] + "Z"  # milliseconds are enough to read
    text = Text(no_wrap=False)
    text.append(stamp, style="dim")
    text.append(f" {level.upper():<8} ", style=style or None)
    if entry.get("request_id"):
        text.append(f"[{entry['request_id']}] ", style="cyan")
    if entry.get("stream") == "gateway":
        text.append("(gateway) ", style="magenta")
    first, *rest = str(entry.get("message", "")).rstrip("\n").split("\n")
    text.append(first, style=style or None)
    for more in rest:
        text.append("\n" + INDENT + more, style=style or None)
    return text


def _show(console: Console, entries: Iterable[dict[str, Any]], as_json: bool) -> None:
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
        else:
            console.print(format_entry(entry), soft_wrap=True, highlight=False)


@click.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines as they come")
@click.option("--since", help="RFC 3339 time or how long ago: 90s, 10m, 8h, 1d")
@click.option("--until", help="RFC 3339 time or how long ago")
@click.option("--level", help="minimum level: debug, info, warning, error, critical")
@click.option("--grep", "text", help="only lines containing this text (case-insensitive)")
@click.option("--request-id", help="only lines of this event")
@click.option("--limit", type=int, help="at most this many lines (default 1000; 100 before following)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--asc", is_flag=True, help="the oldest lines of the range instead of the newest")
def logs(
    name: str,
    follow: bool,
    since: str | None,
    until: str | None,
    level: str | None,
    text: str | None,
    request_id: str | None,
    limit: int | None,
    as_json: bool,
    asc: bool,
) -> None:
    """Show the log of function NAME (_gateway for the gateway's own), oldest line first."""
    client = client_from(click.get_current_context())
    as_json = chosen_format(None, as_json=as_json) in ("json", "yaml")  # the global -o json: one object a line
    params: dict[str, Any] = {
        "since": since,
        "until": until,
        "level": level,
        "q": text,
        "request_id": request_id,
        "limit": limit,
    }
    params = {k: v for k, v in params.items() if v is not None}
    console = output_console()
    path = f"/v1/functions/{name}/logs"
    if follow:
        params["follow"] = 1
        try:
            for raw in client.stream_lines(path, params):
                if raw.startswith("data: "):
                    _show(console, [json.loads(raw[6:])], as_json)
        except KeyboardInterrupt:
            pass
        return
    params["order"] = "asc" if asc else "desc"
    entries = client.json("GET", path, params=params)["entries"]
    # Newest-first is how the API finds the last N; a reader wants them in time order like tail.
    _show(console, entries if asc else reversed(entries), as_json)
