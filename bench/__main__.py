"""``python -m bench [NAME...]``: run the benchmark modules, show progress, print a table, write results.json.

NAME is a module (``invoke``, ``bench_invoke``) or a figure name (``invoke_http_p50_ms``), which runs the
module that produces it. A full run rewrites ``bench/results.json``; a partial run updates only its figures.
A module that is missing or does not import is skipped with a note; one that fails is reported and makes the
exit status 1, after the others have run. Missing targets do not: benchmarks measure, they do not gate.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.figure import rounded

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"

# Run order, and the figures each module is expected to give (so a skipped module still leaves its names).
MODULES: dict[str, dict[str, str]] = {
    "bench_invoke": {"invoke_http_p50_ms": "ms", "invoke_http_p99_ms": "ms", "invoke_throughput_per_s": "per_s",
                     "gateway_idle_rss_mib": "MiB", "worker_idle_rss_mib": "MiB"},
    "bench_cold_start": {"cold_start_process_p50_ms": "ms", "cold_start_container_p50_ms": "ms",
                         "invoke_container_warm_p50_ms": "ms"},
    "bench_sdk": {"invoke_sdk_p50_ms": "ms"},
    "bench_restart": {"restart_to_serving_ms": "ms"},
    "bench_mqtt": {"mqtt_to_function_per_s": "per_s", "mqtt_to_function_p50_ms": "ms"},
    "bench_log_query": {"log_query_1h_ms": "ms", "log_append_per_s": "per_s"},
    "bench_node": {"node_cold_start_p50_ms": "ms", "node_invoke_http_p50_ms": "ms", "node_worker_idle_rss_mib": "MiB"},
    "bench_noisy": {"noisy_neighbour_p99_ratio": "ratio"},
}  # fmt: skip


@dataclass
class Outcome:
    """What running one module gave: figures, or why there are none."""

    module: str
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""  # "skipped: ..." or "failed: ..."
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.note.startswith("failed")


def all_modules() -> list[str]:
    """The known modules in run order, then any other ``bench_*.py`` in this folder."""
    extra = sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem not in MODULES)
    return [*MODULES, *extra]


def select(names: list[str]) -> list[str]:
    """The modules to run for the command-line names; raises SystemExit(2) for an unknown name."""
    if not names:
        return all_modules()
    chosen: list[str] = []
    for name in names:
        module = next((m for m in all_modules() if name in (m, m.removeprefix("bench_"))), None)
        module = module or next((m for m, figs in MODULES.items() if name in figs), None)
        if module is None:
            raise SystemExit(f"unknown benchmark {name!r}; modules: {', '.join(all_modules())}")
        if module not in chosen:
            chosen.append(module)
    return chosen


def run_module(module: str) -> Outcome:
    """Import ``bench.<module>`` and call its ``run()``; never raises for the module's own failures."""
    t0 = time.monotonic()
    if not (HERE / f"{module}.py").exists():
        return Outcome(module, note="skipped: module not written yet")
    try:
        mod = importlib.import_module(f"bench.{module}")
    except Exception as exc:  # noqa: BLE001 — a module that does not import is skipped, not fatal
        return Outcome(module, note=f"skipped: import failed: {exc!r}")
    try:
        figures = mod.run()
    except Exception as exc:  # noqa: BLE001 — report and go on with the other modules
        logging.getLogger("bench").error("%s failed:\n%s", module, traceback.format_exc())
        return Outcome(module, note=f"failed: {exc!r}"[:300], seconds=time.monotonic() - t0)
    return Outcome(module, figures=figures, seconds=time.monotonic() - t0)


def placeholders(outcome: Outcome) -> dict[str, dict[str, Any]]:
    """Null entries for the figures a module was expected to give and did not, saying why."""
    why = f"{outcome.module} {outcome.note}" if outcome.note else f"not reported by {outcome.module}"
    return {
        name: {"value": None, "unit": unit, "detail": {"skipped": why}}
        for name, unit in MODULES.get(outcome.module, {}).items()
        if name not in outcome.figures
    }


def target_of(entry: dict[str, Any]) -> tuple[str, bool | None]:
    """The target text and whether it is met; understands ``detail.target``/``ok`` and ``detail.target_<unit>``."""
    detail = entry.get("detail") or {}
    if "target" in detail:
        return str(detail["target"]), detail.get("ok")
    unit, value = entry.get("unit"), entry.get("value")
    bound = next(
        (v for k, v in detail.items() if k.startswith("target_") and isinstance(v, int | float)), None
    )
    if bound is None:
        return "", None
    lower_is_better = unit in ("ms", "MiB")
    text = f"{'<=' if lower_is_better else '>='} {bound:g} {unit}"
    if value is None:
        return text, None
    return text, value <= bound if lower_is_better else value >= bound


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return f"{rounded(value):g}"
    return str(value)


def table(outcomes: list[Outcome]) -> Table:
    """The results table: one row per figure (or per module without figures)."""
    out = Table(title="edgefc benchmarks", show_lines=False)
    for column in ("name", "value", "unit", "baseline", "ratio", "target", "ok?"):
        out.add_column(column, justify="right" if column in ("value", "baseline", "ratio") else "left")
    for outcome in outcomes:
        if not outcome.figures:
            out.add_row(
                outcome.module,
                "—",
                "",
                "",
                "",
                outcome.note[:70],
                "[yellow]skip" if not outcome.failed else "[red]FAIL",
            )
            continue
        for name, entry in outcome.figures.items():
            detail = entry.get("detail") or {}
            text, ok = target_of(entry)
            mark = {True: "[green]yes", False: "[red]no", None: ""}[ok]
            if entry.get("value") is None:
                text, mark = str(detail.get("skipped", ""))[:70], "[yellow]skip"
            out.add_row(name, _cell(entry.get("value")), entry.get("unit", ""), _cell(detail.get("baseline")),
                        _cell(detail.get("ratio")), text, mark)  # fmt: skip
    return out


def write_results(outcomes: list[Outcome], *, partial: bool) -> None:
    """Write ``results.json``: a full run replaces it, a partial run updates the figures it produced."""
    results: dict[str, Any] = {}
    if partial and RESULTS.exists():
        try:
            results = json.loads(RESULTS.read_text())
        except ValueError:
            results = {}
    for outcome in outcomes:
        results.update(placeholders(outcome))
        results.update(outcome.figures)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run edgefc's benchmarks.")
    parser.add_argument(
        "names", nargs="*", help="modules (invoke, bench_sdk, ...) or figure names; default all"
    )
    args = parser.parse_args(argv)
    modules = select(args.names)
    console = Console(width=None if sys.stdout.isatty() else 132)  # a log file gets the whole table
    outcomes: list[Outcome] = []
    started = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        logging.basicConfig(level=logging.INFO, format="%(message)s", force=True,
                            handlers=[RichHandler(console=progress.console, show_path=False, show_time=False)])  # fmt: skip
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        task = progress.add_task("benchmarks", total=len(modules))
        for module in modules:
            progress.update(task, description=f"running {module}")
            outcome = run_module(module)
            if outcome.figures:
                outcome.figures.update(placeholders(outcome))
            outcomes.append(outcome)
            note = outcome.note or ", ".join(outcome.figures)
            progress.console.log(f"{module}: {note} ({outcome.seconds:.0f} s)")
            progress.advance(task)
        progress.update(task, description="done")
    console.print(table(outcomes))
    write_results(outcomes, partial=bool(args.names))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(
        f"wrote {RESULTS.relative_to(HERE.parent)} in {time.monotonic() - started:.0f} s "
        f"(load average now {load} on {os.cpu_count()} cores; other work on the machine skews figures)"
    )
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
