"""How the CLI prints: ``-o table|wide|json|yaml``, RFC 3339 times, text results, colour only where wanted.

Every command that shows data goes through :func:`emit`, so the formats, the time rendering and ``NO_COLOR``
behave the same everywhere. Tables are built by :func:`fit_table`, which never shortens the columns a reader
needs to recognise a row (NAME, STATE): at a narrow width it drops the least useful columns instead.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import yaml

if TYPE_CHECKING:  # rich is imported where a table is drawn: `edgefc gateway run` never loads it
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

FORMATS = ("table", "wide", "json", "yaml")

# Fields the API gives as epoch seconds (or milliseconds, for device reports); shown as RFC 3339 UTC.
TIME_KEYS = frozenset({"at", "time", "started_at", "finished_at", "applied_at", "created_at", "failed_at",
                       "last_seen", "next_fire", "reported_at"})  # fmt: skip
WHOLE = 10_000  # a width no table reaches: print it whole
_MS_THRESHOLD = 1e11  # epoch seconds stay below this until the year 5138; milliseconds are above it


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-o/--output`` on a command; when absent the global ``edgefc -o`` applies (see :func:`chosen_format`)."""
    return click.option("-o", "--output", "output", type=click.Choice(FORMATS), default=None,
                        help="table (default), wide (every column), json or yaml")(func)  # fmt: skip


def chosen_format(output: str | None, *, as_json: bool = False) -> str:
    """The format to print in: the command's ``-o``, its ``--json`` flag, else the global ``-o``, else table."""
    if output:
        return output
    if as_json:
        return "json"
    root = click.get_current_context().find_root()
    return str(root.params.get("output") or "table")


def no_color() -> bool:
    """Whether colour is off: the NO_COLOR convention (https://no-color.org), any non-empty value."""
    return bool(os.environ.get("NO_COLOR"))


def console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A rich Console that honours NO_COLOR (no colour, no bold) and prints piped tables whole."""
    from rich.console import Console

    plain = no_color()
    made = Console(stderr=stderr, no_color=plain, highlight=False, width=width, emoji=False,
                   color_system=None if plain else "auto")  # fmt: skip
    if width is None and not made.is_terminal:
        # Piped (a script, `| grep`), rich would squeeze a table into 80 columns and cut cells: print it whole.
        made = Console(stderr=stderr, no_color=True, color_system=None, highlight=False, width=WHOLE, emoji=False)
    return made


def rfc3339(value: Any) -> str | None:
    """Epoch seconds, epoch milliseconds or an ISO string → ``2026-12-01T04:19:22.123Z``; None stays None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MS_THRESHOLD else value
        stamp = datetime.fromtimestamp(seconds, UTC)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        stamp = stamp.astimezone(UTC)
    else:
        return str(value)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize(value: Any, key: str | None = None) -> Any:
    """API data as the CLI shows it: times in RFC 3339, results that are text as text (not base64)."""
    if isinstance(value, dict):
        out = {k: normalize(v, k) for k, v in value.items()}
        if isinstance(out.get("result_base64"), str):
            text = decode_text(base64.b64decode(out["result_base64"]))
            if text is not None:
                out.pop("result_base64")
                out["result"] = text
        return out
    if isinstance(value, list):
        return [normalize(item) for item in value]
    if key in TIME_KEYS and isinstance(value, int | float | str) and not isinstance(value, bool):
        return rfc3339(value)
    return value


def decode_text(data: bytes) -> str | None:
    """``data`` as text when it is UTF-8 without control characters other than whitespace; else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return None
    return text


def dump(data: Any, fmt: str) -> str:
    """``data`` (already normalized) as JSON or YAML text."""
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False)


def emit(data: Any, fmt: str, render: Callable[[Any, bool], RenderableType | None]) -> None:
    """Print ``data`` in ``fmt``: JSON/YAML as normalized data, table/wide through ``render(data, wide)``."""
    shown = normalize(data)
    if fmt in ("json", "yaml"):
        click.echo(dump(shown, fmt))
        return
    renderable = render(shown, fmt == "wide")
    if renderable is not None:
        # Wide means every column whole even past the terminal's edge (it wraps the lines), like kubectl's.
        console(width=WHOLE if fmt == "wide" else None).print(renderable)


@dataclass(frozen=True)
class Column:
    """A table column; ``keep`` columns are never dropped or shortened, the others go lowest ``rank`` first."""

    header: str
    rank: int = 0
    keep: bool = False
    justify: str = "left"


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], *, wide: bool = False,
              width: int | None = None) -> Table:  # fmt: skip
    """A borderless table of ``rows`` that fits ``width`` (the terminal's) by dropping columns, never cells.

    With ``wide`` or when piped every column is shown, each cell whole.
    """
    from rich.table import Table

    out = console()
    available = width if width is not None else (out.width if out.is_terminal else None)
    shown = list(range(len(columns)))
    sizes = [max([len(c.header)] + [len(_plain(row[i])) for row in rows]) for i, c in enumerate(columns)]
    if not wide and available is not None:
        gap = 2  # rich's default padding between borderless columns
        droppable = sorted((i for i, c in enumerate(columns) if not c.keep), key=lambda i: columns[i].rank)
        while sum(sizes[i] + gap for i in shown) - gap > available and droppable:
            shown.remove(droppable.pop(0))
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for i in shown:
        column = columns[i]
        table.add_column(column.header, justify=column.justify, no_wrap=True,  # type: ignore[arg-type]
                         overflow="fold" if column.keep else "ellipsis",
                         min_width=sizes[i] if column.keep else len(column.header))  # fmt: skip
    for row in rows:
        table.add_row(*[row[i] for i in shown])
    return table


def _plain(cell: str | Text) -> str:
    from rich.text import Text

    return cell.plain if isinstance(cell, Text) else cell


def styled(text: str, style: str) -> Text:
    """A cell in ``style`` (no markup is parsed: names with ``[`` print as they are)."""
    from rich.text import Text

    return Text(text, style="" if no_color() else style)


def echo_err(text: str) -> None:
    """A line on stderr."""
    print(text, file=sys.stderr, flush=True)
