"""``edgefc top``: a live view of every function and the gateway host, from ``/v1/functions`` and ``/v1/stats``."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from edgefc.cli.client import ApiClient, client_from
from edgefc.cli.output import Column, fit_table, styled
from edgefc.cli.output import console as output_console

STATE_STYLES = {
    "running": "green",
    "idle": "cyan",
    "starting": "yellow",
    "backoff": "bold yellow",
    "failed": "bold red",
    "stopped": "dim",
}


def human_bytes(n: float | None) -> str:
    """1536 → '1.5K'; None → '-'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"  # unreachable


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


TOP_COLUMNS = [
    Column("FUNCTION", keep=True), Column("STATE", keep=True), Column("MODE", rank=3),
    Column("INST", rank=4, justify="right"), Column("CPU%", rank=6, justify="right"),
    Column("MEM / LIMIT", rank=7, justify="right"), Column("INV/S", rank=5, justify="right"),
    Column("P99 MS", rank=2, justify="right"), Column("RESTARTS", rank=1, justify="right"),
]  # fmt: skip


def render(functions: list[dict[str, Any]], stats: dict[str, Any]) -> Group:
    """One frame: a host line and a table of functions."""
    host = stats.get("host", {})
    load = host.get("load") or []
    header = Text()
    header.append("gateway  ", style="bold")
    header.append(f"cpu {_num(host.get('cpu_percent'), '.1f')}%   ")
    header.append(
        f"mem {human_bytes(host.get('memory_bytes'))} / {human_bytes(host.get('memory_total_bytes'))}   "
    )
    header.append(f"disk free {human_bytes(host.get('disk_free_bytes'))}   ")
    header.append("load " + " ".join(f"{x:.2f}" for x in load))
    rows: list[list[str | Text]] = []
    per_function = stats.get("functions", {})
    for status in sorted(functions, key=lambda s: str(s.get("name"))):
        name = str(status.get("name"))
        figures = per_function.get(name, {})
        instances = status.get("instances") or []
        memory = figures.get("memory_bytes", sum(i.get("memory_bytes") or 0 for i in instances))
        limit = figures.get("memory_limit_bytes")
        state = str(status.get("state", "?"))
        duration = figures.get("duration_ms") or status.get("duration_ms") or {}
        restarts = status.get("restarts")
        rows.append([
            name,
            styled(state, STATE_STYLES.get(state, "")),
            str(status.get("mode", "")),
            str(len(instances)),
            _num(figures.get("cpu_percent"), ".1f"),
            f"{human_bytes(memory)} / {human_bytes(limit) if limit else '-'}",
            _num(figures.get("invocations_per_s"), ".1f"),
            _num(duration.get("p99"), ".1f"),
            str(sum(restarts.values()) if isinstance(restarts, dict) else restarts or 0),
        ])
    if not functions:
        rows.append([Text("no functions deployed", style="dim"), "", "", "", "", "", "", "", ""])
    # Like ps: in a narrow terminal the least useful columns go first; FUNCTION and STATE stay whole.
    table = fit_table(TOP_COLUMNS, rows)
    return Group(header, Text(""), table)


def frame(client: ApiClient) -> Group:
    """Fetch both endpoints and render them."""
    functions = client.json("GET", "/v1/functions")
    stats = client.json("GET", "/v1/stats", params={"history": "0"})
    return render(functions, stats)


@click.command("top")
@click.option("--interval", type=float, default=2.0, show_default=True, help="seconds between refreshes")
@click.option("--once", is_flag=True, help="print one frame and exit")
def top(interval: float, once: bool) -> None:
    """Live view of every function (state, instances, CPU, memory, rate, p99, restarts) and the host."""
    client = client_from(click.get_current_context())
    console = output_console()  # honours NO_COLOR; piped, prints the table whole
    if once:
        console.print(frame(client))
        return
    try:
        with Live(frame(client), console=console, screen=False, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(client), refresh=True)
    except KeyboardInterrupt:
        pass
