"""``edgefc ps`` and ``edgefc describe NAME``: what runs, from ``GET /v1/functions`` and the applied manifest."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edgefc.cli.client import ApiClient, client_from
from edgefc.cli.output import Column, chosen_format, emit, fit_table, output_option, styled
from edgefc.cli.top import human_bytes
from edgefc.errors import ValidationError

STATE_STYLES = {"running": "green", "idle": "cyan", "starting": "blue", "backoff": "yellow", "failed": "bold red",
                "stopped": "dim"}  # fmt: skip

# NAME and STATE identify a row and are never shortened; the rest go, lowest rank first, when the terminal is
# narrow (``-o wide`` or a pipe shows them all).
PS_COLUMNS = [
    Column("NAME", keep=True), Column("MODE", rank=8), Column("STATE", keep=True), Column("ISOLATION", rank=2),
    Column("INST", rank=7, justify="right"), Column("VERSION", rank=3), Column("CALLS", rank=9, justify="right"),
    Column("ERRORS", rank=6, justify="right"), Column("P50 MS", rank=1, justify="right"),
    Column("P99 MS", rank=5, justify="right"), Column("RESTARTS", rank=4, justify="right"),
    Column("LAST EXIT", rank=0),
]  # fmt: skip


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _last_exit(last: dict[str, Any] | None) -> str:
    return f"{last.get('reason')} ({last.get('code')})" if last else "-"


def _restarts(value: Any) -> str:
    return str(sum(value.values()) if isinstance(value, dict) else value or 0)


def ps_table(functions: list[dict[str, Any]], wide: bool, width: int | None = None) -> Table:
    """The ``ps`` table of ``GET /v1/functions``."""
    rows: list[list[str | Text]] = []
    for f in functions:
        duration = f.get("duration_ms") or {}
        state = str(f.get("state", "?"))
        rows.append([
            str(f.get("name")), str(f.get("mode", "-")), styled(state, STATE_STYLES.get(state, "")),
            str(f.get("isolation", "-")), str(len(f.get("instances") or [])), str(f.get("version", "-")),
            str(f.get("invocations", 0)), str(f.get("errors", 0)), _ms(duration.get("p50")), _ms(duration.get("p99")),
            _restarts(f.get("restarts")), _last_exit(f.get("last_exit")),
        ])  # fmt: skip
    return fit_table(PS_COLUMNS, rows, wide=wide, width=width)


@click.command("ps")
@output_option
@click.option("--json", "as_json", is_flag=True, help="same as -o json")
def ps(output: str | None, as_json: bool) -> None:
    """List deployed functions: state, instances, version and figures.

    In a narrow terminal the least useful columns are left out (NAME and STATE are never shortened); -o wide
    or a pipe shows every column.
    """
    functions = client_from(click.get_current_context()).json("GET", "/v1/functions")
    emit(functions, chosen_format(output, as_json=as_json), lambda data, wide: ps_table(data, wide))


def describe_data(client: ApiClient, name: str) -> dict[str, Any]:
    """Everything ``describe`` shows, as one mapping (the JSON/YAML output)."""
    from edgefc.config.load import parse_manifest  # heavy: only this command needs it

    status = client.json("GET", f"/v1/functions/{name}")
    current = client.json("GET", "/v1/deployment")
    settings: dict[str, Any] = {}
    env_names: list[str] = []
    config_keys: list[str] | None = None
    try:
        spec = parse_manifest(current["manifest"]).function(name) if current.get("manifest") else None
    except ValidationError:
        spec = None
    if spec is not None:
        dumped = spec.model_dump(mode="json", exclude_none=True)
        env_names = sorted(dumped.pop("env", {}) or {})  # values may be secrets: names only
        config = dumped.pop("config", None)
        config_keys = sorted(config) if isinstance(config, dict) else None
        dumped.pop("schedule_payload", None)
        settings = dumped
    errors = client.json("GET", f"/v1/functions/{name}/logs",
                         params={"level": "error", "limit": 5, "order": "desc"}).get("entries", [])  # fmt: skip
    return {
        "name": name, "state": status.get("state"), "mode": status.get("mode"), "version": status.get("version"),
        "isolation": status.get("isolation"), "settings": settings, "env": env_names, "config_keys": config_keys,
        "schedule": status.get("schedule"), "instances": status.get("instances") or [],
        "restarts": status.get("restarts"), "last_exit": status.get("last_exit"),
        "figures": {k: status.get(k) for k in ("invocations", "errors", "timeouts", "cold_starts", "duration_ms")},
        "recent_errors": [{"time": e.get("time"), "request_id": e.get("request_id"), "message": e.get("message")}
                          for e in reversed(errors)],
    }  # fmt: skip


def _pairs(items: list[tuple[str, str | Text]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in items:
        table.add_row(key, value)
    return table


def describe_view(data: dict[str, Any], wide: bool) -> RenderableType:
    """``describe`` as text: a header, settings, env names, schedule, instances, last exit, recent errors."""
    state = str(data.get("state"))
    figures = data.get("figures") or {}
    head: list[tuple[str, str | Text]] = [("Name", str(data["name"])), ("State", styled(state, STATE_STYLES.get(state, ""))),
            ("Mode", str(data.get("mode"))), ("Version", str(data.get("version"))),
            ("Isolation", str(data.get("isolation"))), ("Restarts", _restarts(data.get("restarts"))),
            ("Last exit", _exit_text(data.get("last_exit"))),
            ("Invocations", f"{figures.get('invocations', 0)} ({figures.get('errors', 0)} errors, "
                            f"{figures.get('timeouts', 0)} timeouts, {figures.get('cold_starts', 0)} cold starts)")]
    schedule = data.get("schedule")
    if schedule:
        head.append(("Schedule", f"{schedule.get('expression')} (next fire {schedule.get('next_fire') or '-'})"))
    parts: list[RenderableType] = [_pairs(head)]
    settings = data.get("settings") or {}
    if settings:
        shown = {k: v for k, v in settings.items() if k not in ("name", "mode", "isolation", "schedule")}
        parts += [Text("\nSettings", style="bold"), _pairs([(k, _value(v)) for k, v in shown.items()])]
    parts += [Text("\nEnvironment (names only)", style="bold"),
              Text("  " + (", ".join(data.get("env") or []) or "none"))]  # fmt: skip
    if data.get("config_keys") is not None:
        parts += [Text("\nConfig keys", style="bold"), Text("  " + (", ".join(data["config_keys"]) or "none"))]
    instances = data.get("instances") or []
    parts.append(Text("\nInstances", style="bold"))
    if instances:
        rows = [[str(i.get("id")), str(i.get("pid")), str(i.get("state")), str(i.get("started_at")),
                 human_bytes(i.get("memory_bytes"))] for i in instances]  # fmt: skip
        columns = [Column("ID", keep=True), Column("PID", rank=2), Column("STATE", keep=True),
                   Column("STARTED", rank=1), Column("MEMORY", rank=0, justify="right")]  # fmt: skip
        parts.append(fit_table(columns, rows, wide=wide))
    else:
        parts.append(Text("  none"))
    parts.append(Text("\nRecent errors", style="bold"))
    errors = data.get("recent_errors") or []
    for entry in errors:
        parts.append(Text(f"  {entry.get('time')} {_gist(str(entry.get('message') or ''))}"))
    if not errors:
        parts.append(Text("  none"))
    return Group(*parts)


def _gist(message: str) -> str:
    """One line of an error: a traceback's last line (``ValueError: boom``), else the message's first."""
    lines = [line for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1].strip() if lines[0].startswith("Traceback") else lines[0]


def _exit_text(last: dict[str, Any] | None) -> str:
    return f"{last.get('reason')} (code {last.get('code')}) at {last.get('at')}" if last else "-"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "-"
    return str(value)


@click.command("describe")
@click.argument("name")
@output_option
def describe(name: str, output: str | None) -> None:
    """Show one function: settings, environment names (never values), schedule and next fire, instances,
    last exit and recent errors.
    """
    data = describe_data(client_from(click.get_current_context()), name)
    emit(data, chosen_format(output), describe_view)
