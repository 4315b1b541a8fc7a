"""Log store benchmarks: query one hour of one function from a store of 1 million lines; append throughput.

Run alone with ``python -m bench.bench_log_query``; ``run()`` returns the CONTRACT §8 figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgefc.observe.entry import Level, LogEntry, StoredEntry
from edgefc.observe.logs import LogStore

LINES = 1_000_000
FUNCTIONS = 10
DAYS = 7
QUERY_RUNS = 21
APPEND_LINES = 200_000

_WORDS = (
    "sensor reading temperature humidity pressure device gateway connected timeout retry publish topic "
    "value ok failed modbus register opcua node batch flushed cache miss hit queue depth"
).split()
_LEVELS = [Level.DEBUG] * 10 + [Level.INFO] * 70 + [Level.WARNING] * 15 + [Level.ERROR] * 5


def _lines(n: int, now: float, rng: random.Random) -> Iterator[StoredEntry]:
    span = DAYS * 86400.0
    step = span / n
    for i in range(n):
        t = now - span + i * step + rng.random() * step
        function = f"fn{i % FUNCTIONS}"
        words = " ".join(rng.choice(_WORDS) for _ in range(10))
        yield StoredEntry(
            id=i + 1,
            time=t,
            function=function,
            instance=f"{function}-{i // 50_000}",
            request_id=f"{i // 20:016x}",
            level=rng.choice(_LEVELS),
            stream="stdout",
            message=f"{words} #{i}",
        )


def _chunks(it: Iterator[StoredEntry], size: int) -> Iterator[list[StoredEntry]]:
    chunk: list[StoredEntry] = []
    for item in it:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _time_queries(store: LogStore, now: float) -> dict[str, Any]:
    since, until = now - 2 * 86400 - 3600, now - 2 * 86400  # one hour, two days ago
    cases: dict[str, dict[str, Any]] = {
        "one_hour": {},
        "one_hour_errors": {"level": "error"},
        "one_hour_text": {"q": "modbus register"},
        "whole_week_text_rare": {"q": "#123453", "since": None, "until": None},
        "whole_week_errors": {"level": "error", "since": None, "until": None, "limit": 100},
        "request_id": {"request_id": f"{123456 // 20:016x}", "since": None, "until": None},
    }
    out: dict[str, Any] = {}
    for name, extra in cases.items():
        kwargs: dict[str, Any] = {"since": since, "until": until, **extra}
        times = []
        rows = 0
        for _ in range(QUERY_RUNS if name == "one_hour" else 7):
            t0 = time.perf_counter()
            rows = len(await store.aquery("fn3", **kwargs))
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {
            "p50_ms": round(statistics.median(times), 2),
            "max_ms": round(max(times), 2),
            "rows": rows,
        }
    return out


def _load(directory: Path, now: float) -> tuple[LogStore, float]:
    store = LogStore(directory / "logs.db", max_bytes_per_function=1 << 40, max_age_s=30 * 86400)
    t0 = time.perf_counter()
    for chunk in _chunks(_lines(LINES, now, random.Random(42)), 100_000):
        store.bulk_insert(chunk)
    return store, time.perf_counter() - t0


async def _bench(directory: Path, store: LogStore, now: float, load_s: float) -> dict[str, dict[str, Any]]:
    await store.start()
    try:
        queries = await _time_queries(store, now)
    finally:
        await store.close()
    db_bytes = await asyncio.to_thread(lambda: sum(p.stat().st_size for p in directory.glob("logs.db*")))
    charged = sum(store.size_bytes(f"fn{i}") for i in range(FUNCTIONS))

    append = LogStore(directory / "append.db", rate_limit_lines_per_s=10**9, max_pending=10**7)
    await append.start()
    try:
        entries = [
            LogEntry(now, f"fn{i % 4}", "i-1", f"r{i // 10}", "info", "stdout", f"line {i} " + "x" * 60)
            for i in range(APPEND_LINES)
        ]
        t0 = time.perf_counter()
        for entry in entries:
            append.append(entry)
        on_loop_s = time.perf_counter() - t0
        await append.flush()
        total_s = time.perf_counter() - t0
    finally:
        await append.close()

    one_hour = queries["one_hour"]
    return {
        "log_query_1h_ms": {
            "value": one_hour["p50_ms"],
            "unit": "ms",
            "detail": {
                "target_ms": 200,
                "store_lines": LINES,
                "functions": FUNCTIONS,
                "days": DAYS,
                "rows_returned": one_hour["rows"],
                "bulk_load_s": round(load_s, 1),
                "db_file_mib": round(db_bytes / 2**20, 1),
                "charged_mib": round(charged / 2**20, 1),
                "disk_per_charged_byte": round(db_bytes / charged, 2) if charged else None,
                "full_text": store.fts,
                "queries": queries,
            },
        },
        "log_append_per_s": {
            "value": round(APPEND_LINES / total_s),
            "unit": "per_s",
            "detail": {
                "lines": APPEND_LINES,
                "append_on_loop_us": round(on_loop_s / APPEND_LINES * 1e6, 2),
                "append_and_write_s": round(total_s, 2),
            },
        },
    }


def run() -> dict[str, dict[str, Any]]:
    """Build the stores in a temporary folder, measure, clean up."""
    with tempfile.TemporaryDirectory(prefix="edgefc-bench-logs-") as tmp:
        now = time.time()
        store, load_s = _load(Path(tmp), now)
        return asyncio.run(_bench(Path(tmp), store, now, load_s))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
