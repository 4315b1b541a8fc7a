"""Observability through a real gateway: logs from every channel, queries and follow, bounds, metrics, stats.

Most tests share one gateway (``gw``, module scope) whose deployment holds every function they need, deployed
once; retention and the rate limit need their own gateway config and get a gateway each. The resource test
comes last so that the stats sampler (every 10 s) has usually sampled the 100 MiB function by then.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.gateway_harness import EDGEFC, GatewayProcess, fn

MiB = 1024 * 1024

CHANNELS = r"""
import logging, os, subprocess, sys, threading, traceback

log = logging.getLogger("app")


def handler(event, context):
    if event == b"all":
        print("p-print")
        sys.stderr.write("p-stderr\n")
        log.error("p-logging-error")
        log.info("p-logging-info")
        context.logger.warning("p-context-logger")
        os.write(1, b"p-fd1\n")
        os.write(2, b"p-fd2\n")
        subprocess.run([sys.executable, "-c", "import sys; print('p-child-out'); print('p-child-err', file=sys.stderr)"],
                       check=True)
        worker = threading.Thread(target=print, args=("p-thread",))
        worker.start()
        worker.join()
        try:
            {}["missing"]
        except KeyError:
            traceback.print_exc()
        return context.request_id
    if event == b"raise":
        print("p-before-raise")
        raise ValueError("p-uncaught")
    if event.startswith(b"say:"):
        print(event[4:].decode())
        return context.request_id
    if event == b"odd":
        os.write(1, b"p-raw \xff\xfe end\n")
        print("p-surrogate", "\udcff", "end")
        # A line of 2-byte characters that starts at an odd offset: pipe reads split it mid-character.
        os.write(1, b"a\n" + b"b" * 60000 + b"\n" + "\u00e9".encode() * 5000 + b"\n")
        os.write(1, b"G" * (32 * 1024 * 1024) + b"\n")
        print("P" * (3 * 1024 * 1024))
        return context.request_id
    return "ok"
"""

FLAKY = """
def handler(event, context):
    if event == b"fail":
        raise RuntimeError("asked to fail")
    return "fine"
"""

HOG = """
HELD = []

def init(context):
    HELD.append(bytearray(b"\\x01") * (100 * 1024 * 1024))  # written, so every page is resident


def handler(event, context):
    return str(sum(len(b) for b in HELD))
"""

SPAM = """
def handler(event, context):
    word, _, count = event.decode().partition(" ")
    for i in range(int(count or 1)):
        print(f"{word} line {i:04d} " + "x" * 80)
    return "done"
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("obs") / "data").start()
    try:
        gateway.deploy(
            {
                "functions": [
                    fn("chan", memory_mb=256, timeout_s=10),
                    fn("flaky", timeout_s=5),
                    fn("hog", mode="continuous", initializer="index.init", memory_mb=256, timeout_s=5),
                ]
            },
            {"chan": CHANNELS, "flaky": FLAKY, "hog": HOG},
        )
        yield gateway
    finally:
        gateway.stop()


def logs(gw: GatewayProcess, name: str, **params: Any) -> list[dict[str, Any]]:
    assert gw.client is not None
    response = gw.client.get(f"/v1/functions/{name}/logs", params={"limit": 10000, "order": "asc", **params})
    assert response.status_code == 200, response.text
    return response.json()["entries"]  # type: ignore[no-any-return]


def cli_json(gw: GatewayProcess, *args: str) -> list[dict[str, Any]]:
    result = gw.cli("logs", *args, "--json", timeout=20)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def invoke_ok(gw: GatewayProcess, name: str, payload: bytes) -> str:
    response = gw.invoke(name, payload)
    assert response.status_code == 200, response.text
    return response.text


# ---- every channel, with function, instance, request id, level and stream ------------------------------------


def test_every_channel_arrives_with_its_event_level_and_stream(gw: GatewayProcess) -> None:
    rid = invoke_ok(gw, "chan", b"all")
    instance = gw.status("chan")["instances"][0]["id"]
    entries = logs(gw, "chan", request_id=rid)
    assert {(e["function"], e["instance"], e["request_id"]) for e in entries} == {("chan", instance, rid)}
    got = {
        (e["message"], e["level"], e["stream"]) for e in entries if not e["message"].startswith("Traceback")
    }
    assert got == {
        ("p-print", "info", "stdout"),
        ("p-stderr", "warning", "stderr"),
        ("app: p-logging-error", "error", "log"),
        ("app: p-logging-info", "info", "log"),
        ("chan: p-context-logger", "warning", "log"),
        ("p-fd1", "info", "stdout"),
        ("p-fd2", "warning", "stderr"),
        ("p-child-out", "info", "stdout"),
        ("p-child-err", "warning", "stderr"),
        ("p-thread", "info", "stdout"),
    }
    # traceback.print_exc() is one entry, at level error
    tracebacks = [e for e in entries if e["message"].startswith("Traceback")]
    assert len(tracebacks) == 1, tracebacks
    assert tracebacks[0]["level"] == "error" and tracebacks[0]["stream"] == "stderr"
    assert (
        tracebacks[0]["message"].endswith("KeyError: 'missing'") and "in handler" in tracebacks[0]["message"]
    )


def test_an_uncaught_exception_is_one_error_entry(gw: GatewayProcess) -> None:
    assert gw.invoke("chan", b"raise").status_code == 502
    errors = [e for e in logs(gw, "chan", level="error") if "p-uncaught" in e["message"]]
    assert len(errors) == 1, errors
    rid = errors[0]["request_id"]
    assert rid and errors[0]["stream"] == "stderr"
    message = errors[0]["message"]
    assert message.startswith("Traceback (most recent call last):") and message.endswith(
        "ValueError: p-uncaught"
    )
    assert 'raise ValueError("p-uncaught")' in message
    assert [e["message"] for e in logs(gw, "chan", request_id=rid)] == ["p-before-raise", message]


# ---- the CLI: request id, level, grep, since, json, follow ---------------------------------------------------


def test_cli_shows_one_event_and_filters(gw: GatewayProcess) -> None:
    rid = invoke_ok(gw, "chan", b"all")
    other = invoke_ok(gw, "chan", b"say:p-other-event")
    assert gw.invoke("chan", b"raise").status_code == 502

    by_api = logs(gw, "chan", request_id=rid)
    assert cli_json(gw, "chan", "--request-id", rid) == by_api and len(by_api) == 11

    errors = cli_json(gw, "chan", "--level", "error", "--since", "10m")
    assert errors and {e["level"] for e in errors} == {"error"}
    assert any("p-uncaught" in e["message"] for e in errors) and any(
        "p-logging-error" in e["message"] for e in errors
    )

    grepped = cli_json(gw, "chan", "--grep", "P-OTHER-EVENT")  # case-insensitive, like grep -i
    assert [(e["message"], e["request_id"]) for e in grepped] == [("p-other-event", other)]

    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert cli_json(gw, "chan", "--since", future) == []
    assert len(cli_json(gw, "chan", "--since", "10m", "--request-id", rid)) == 11

    # Human form: oldest first, the request id shown, a traceback's later lines indented under it.
    text = gw.cli("logs", "chan", "--request-id", rid, timeout=20)
    assert text.returncode == 0, text.stderr.decode()
    lines = text.stdout.decode().splitlines()
    assert f"[{rid}]" in lines[0] and lines[0].rstrip().endswith("p-print")
    start = next(
        i for i, line in enumerate(lines) if line.rstrip().endswith("Traceback (most recent call last):")
    )
    assert "ERROR" in lines[start] and lines[start + 1].startswith("    ")


class Follower:
    """``edgefc logs NAME -f --json`` as a child process, its lines read by a thread into a queue."""

    def __init__(self, gw: GatewayProcess, name: str) -> None:
        env = {**os.environ, "EDGEFC_GATEWAY": gw.url, "EDGEFC_TOKEN": gw.token}
        self.proc = subprocess.Popen([*EDGEFC, "logs", name, "-f", "--json"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))
        self.lines.put(None)

    def wait_for(self, message: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                entry = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if entry is None:
                assert self.proc.stderr is not None
                raise AssertionError(f"follower ended: {self.proc.wait()} {self.proc.stderr.read().decode()}")
            if entry["message"] == message:
                return entry
        raise AssertionError(f"follower did not print {message!r} within {timeout} s")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _server_side(gw: GatewayProcess, client_port: int) -> list[Any]:
    """The gateway's TCP connections to a client port (still ESTABLISHED or CLOSE_WAIT means still served)."""
    return [
        c for c in psutil.Process(gw.pid).net_connections("tcp") if c.raddr and c.raddr.port == client_port
    ]


def test_follow_delivers_new_lines_and_a_vanished_follower_is_dropped(gw: GatewayProcess) -> None:
    invoke_ok(gw, "chan", b"say:p-follow-backlog")
    follower = Follower(gw, "chan")
    try:
        # The backlog is read after subscribing, so once it shows, every new line reaches the follower.
        follower.wait_for("p-follow-backlog")
        rid = invoke_ok(gw, "chan", b"say:p-follow-new")
        entry = follower.wait_for("p-follow-new")
        assert entry["request_id"] == rid and entry["function"] == "chan" and entry["level"] == "info"
        ports = [c.laddr.port for c in psutil.Process(follower.proc.pid).net_connections("tcp")]
        assert len(ports) == 1 and _server_side(gw, ports[0])
    finally:
        follower.kill()
    # Gone without a word: the server must notice now, not at the next 15 s heartbeat or never.
    gw.wait_for(lambda: not _server_side(gw, ports[0]), timeout=5, what="the follow connection to be closed")
    # ... and following still works for the next one.
    again = Follower(gw, "chan")
    try:
        again.wait_for("p-follow-new")
    finally:
        again.kill()


def test_the_gateways_own_log_is_queryable_as_gateway(gw: GatewayProcess) -> None:
    entries = cli_json(gw, "_gateway", "--grep", "applied")
    assert any(re.match(r"deployment \S+ applied", e["message"]) for e in entries), entries
    assert {(e["function"], e["stream"]) for e in entries} == {("_gateway", "gateway")}


# ---- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "10x"}, "until"),
        ({"since": "2024-13-45T00:00:00Z"}, "since"),
        ({"level": "loud"}, "level"),
        ({"limit": "100000000"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"follow": "perhaps"}, "follow"),
        ({"follow": "1", "until": "1m"}, "until"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(gw: GatewayProcess, params: dict[str, str],
                                                           parameter: str) -> None:  # fmt: skip
    assert gw.client is not None
    response = gw.client.get("/v1/functions/chan/logs", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"]["parameter"] == parameter and error["message"].startswith(f"{parameter}:")


def test_unknown_function_is_404_and_cli_exits_2(gw: GatewayProcess) -> None:
    assert gw.client is not None
    assert gw.client.get("/v1/functions/no-such-fn/logs").status_code == 404
    assert gw.client.get("/v1/functions/no-such-fn/logs", params={"follow": "1"}).status_code == 404
    for args in (["no-such-fn"], ["chan", "--level", "loud"], ["chan", "--since", "yesterday"]):
        result = gw.cli("logs", *args, timeout=20)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert b"level" in gw.cli("logs", "chan", "--level", "loud", timeout=20).stderr


def test_non_utf8_and_huge_lines_are_stored_marked_and_nothing_breaks(gw: GatewayProcess) -> None:
    invoke_ok(gw, "chan", b"say:warm")
    instance = gw.status("chan")["instances"][0]["id"]
    t0 = time.monotonic()
    rid = invoke_ok(gw, "chan", b"odd")  # a lone surrogate in print() must not fail the event
    assert time.monotonic() - t0 < 5
    # A 32 MiB line is read and cut by the worker while the event ends: on a busy machine it may land a moment later.
    def complete() -> list[str] | None:
        found = [e["message"] for e in logs(gw, "chan", request_id=rid)]
        return found if any(m.startswith("GGGG") for m in found) and any(m.startswith("PPPP") for m in found) else None

    messages = gw.wait_for(complete, what="the huge lines in the log", timeout=15)
    assert "p-raw \\xff\\xfe end" in messages
    assert "p-surrogate \\xff end" in messages
    accents = [m for m in messages if m.startswith("\u00e9")]
    assert accents == ["\u00e9" * 5000], "a character split between two pipe reads must stay whole"
    giant = [m for m in messages if m.startswith("GGGG")]
    printed = [m for m in messages if m.startswith("PPPP")]
    assert len(giant) == 1 and giant[0].endswith(f"… [truncated: {32 * MiB} bytes in all]")
    assert len(printed) == 1 and printed[0].endswith(f"… [truncated: {3 * MiB} bytes in all]")
    assert len(giant[0].encode()) < 16384 + 100 and len(printed[0].encode()) < 16384 + 100
    # the same instance goes on answering
    assert gw.status("chan")["instances"][0]["id"] == instance
    assert invoke_ok(gw, "chan", b"say:still-here")


# ---- Prometheus and resources ----------------------------------------------------------------------------------


def _metric(text: str, sample: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


CONTRACT_METRICS = {
    "edgefc_invocations", "edgefc_invocation_duration_seconds", "edgefc_cold_starts", "edgefc_cold_start_seconds",
    "edgefc_instance_restarts", "edgefc_function_memory_bytes", "edgefc_function_cpu_seconds",
    "edgefc_messages_routed", "edgefc_messages_dropped", "edgefc_queue_depth",
}  # fmt: skip


def test_metrics_parse_and_move_with_invocations(gw: GatewayProcess) -> None:
    assert gw.client is not None
    before = gw.client.get("/metrics")
    assert before.status_code == 200
    assert CONTRACT_METRICS <= {f.name for f in text_string_to_metric_families(before.text)}
    assert _metric(before.text, "edgefc_cold_starts_total", function="flaky") == 0
    for payload in (b"ok", b"fail", b"ok", b"fail", b"ok"):
        gw.invoke("flaky", payload)
    after = gw.client.get("/metrics").text
    key = {"function": "flaky", "trigger": "invoke"}
    assert _metric(after, "edgefc_invocations_total", outcome="success", **key) == 3
    assert _metric(after, "edgefc_invocations_total", outcome="error", **key) == 2
    assert _metric(after, "edgefc_invocation_duration_seconds_count", function="flaky") == 5
    assert _metric(after, "edgefc_cold_starts_total", function="flaky") == 1
    assert _metric(after, "edgefc_cold_start_seconds_count", function="flaky") == 1
    assert gw.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_stats_show_host_and_the_memory_a_function_holds_and_ps_top_list_it(gw: GatewayProcess) -> None:
    assert gw.client is not None
    hog = gw.status("hog")["instances"][0]

    def sampled() -> dict[str, Any] | None:
        body = gw.client.get("/v1/stats", params={"history": "1h"}).json()  # type: ignore[union-attr]
        figures = body["functions"].get("hog") or {}
        return body if [i["id"] for i in figures.get("instances", [])] == [hog["id"]] else None

    # The sampler runs every 10 s and cannot be asked for a sample; the module's earlier tests used most of that.
    body = gw.wait_for(sampled, timeout=15, what="a stats sample with the hog's instance")
    host = body["host"]
    assert 0 <= host["cpu_percent"] <= 100 * (psutil.cpu_count() or 1)
    assert 0 < host["memory_bytes"] < host["memory_total_bytes"] and host["disk_free_bytes"] > 0
    assert len(host["load"]) == 3
    figures = body["functions"]["hog"]
    truth = sum(
        p.memory_info().rss for p in [psutil.Process(hog["pid"]), *psutil.Process(hog["pid"]).children(True)]
    )
    assert 100 * MiB <= figures["memory_bytes"] <= 100 * MiB + 80 * MiB, figures
    assert abs(figures["memory_bytes"] - truth) <= 0.25 * truth, (figures["memory_bytes"], truth)
    assert figures["memory_limit_bytes"] == 256 * MiB
    assert body["history"]["functions"]["hog"]["memory_bytes"][-1] == figures["memory_bytes"]
    gauge = _metric(gw.client.get("/metrics").text, "edgefc_function_memory_bytes", function="hog")
    # the gauge comes from the same sample, or a later one that may differ a little
    assert abs(gauge - figures["memory_bytes"]) <= 0.05 * figures["memory_bytes"]

    ps = gw.cli("ps", timeout=20)
    assert ps.returncode == 0, ps.stderr.decode()
    assert re.search(r"^\s*hog\s+continuous\s+running", ps.stdout.decode(), re.M), ps.stdout.decode()
    top = gw.cli("top", "--once", timeout=20)
    assert top.returncode == 0, top.stderr.decode()
    out = top.stdout.decode()
    assert out.startswith("gateway  cpu"), out
    assert re.search(r"^hog\s+running\s+continuous\s+1\s.*/ 256\.0M", out, re.M), out


# ---- bounds: rate limit, retention by size and by age -----------------------------------------------------------


def _dropped(entries: list[dict[str, Any]]) -> int:
    found = [re.match(r"(\d+) lines dropped by the rate limit", e["message"]) for e in entries]
    return sum(int(m.group(1)) for m in found if m)


def test_rate_limit_drops_lines_counts_and_reports_them(tmp_path: Path) -> None:
    config = {"logs": {"rate_limit_lines_per_s": 100}}
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    try:
        gw.deploy(
            {"functions": [fn("spam", timeout_s=10), fn("calm", timeout_s=10)]}, {"spam": SPAM, "calm": SPAM}
        )
        invoke_ok(gw, "spam", b"burst 1500")
        invoke_ok(gw, "calm", b"calm 50")
        kept = len(logs(gw, "spam", q="burst line"))
        assert 100 <= kept < 400, kept  # a one-second burst of 100, plus what refilled meanwhile
        assert len(logs(gw, "calm", q="calm line")) == 50  # the limit is per function
    finally:
        gw.stop()  # the drop count not yet reported is written at stop (else every 10 s)
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    try:
        reports = logs(gw, "spam", q="dropped by the rate limit")
        assert reports and {(e["level"], e["stream"]) for e in reports} == {("warning", "gateway")}
        assert kept + _dropped(reports) == 1500
        assert _dropped(logs(gw, "calm", q="dropped by the rate limit")) == 0
    finally:
        gw.stop()


def test_retention_deletes_by_size_as_lines_arrive_and_by_age(tmp_path: Path) -> None:
    max_age = 2.0
    config = {
        "logs": {"max_bytes_per_function": 64 * 1024, "max_age_s": max_age, "rate_limit_lines_per_s": 100000}
    }
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    try:
        gw.deploy({"functions": [fn("spam", timeout_s=10)]}, {"spam": SPAM})
        invoke_ok(gw, "spam", b"fill 1000")
        kept = [e["message"][:14] for e in logs(gw, "spam", q="fill line")]
        # ~330 bytes charged a line: 64 KiB holds ~200; the oldest go, the newest stay, none in between.
        assert 100 <= len(kept) <= 250, len(kept)
        assert kept == [f"fill line {i:04d}" for i in range(1000 - len(kept), 1000)]
        newest = time.time()
    finally:
        gw.stop()
    # Age retention runs every 60 s (not configurable) and at start, with no API to trigger it: restart.
    while time.time() < newest + max_age + 0.1:
        time.sleep(0.1)  # lines must be older than max_age; this waits for the clock, not for the gateway
    gw = GatewayProcess(tmp_path / "data", config=config).start()
    try:
        gw.wait_for(
            lambda: logs(gw, "spam") == [], timeout=5, what="lines older than max_age_s to be deleted"
        )
        invoke_ok(gw, "spam", b"fresh 3")
        assert [e["message"][:15] for e in logs(gw, "spam")] == [f"fresh line {i:04d}" for i in range(3)]
    finally:
        gw.stop()


# ---- the logging benchmark still runs ----------------------------------------------------------------------------


def test_logging_benchmark_smoke() -> None:
    from bench.bench_logging import run

    figures = run(duration_s=1.5)
    assert set(figures) == {
        "logging_gateway_cpu_percent", "logging_lines_kept", "logging_lines_dropped", "invoke_p99_while_logging_ms",
    }  # fmt: skip
    kept, dropped = figures["logging_lines_kept"], figures["logging_lines_dropped"]
    printed = kept["detail"]["printed"]
    assert printed == 15000 and kept["value"] + dropped["value"] == printed and dropped["detail"]["accounted"]
    assert 2000 <= kept["value"] < printed  # the default limit: a one-second burst of 2 000, then 2 000/s
    assert figures["logging_gateway_cpu_percent"]["value"] > 0
    p99 = figures["invoke_p99_while_logging_ms"]
    assert p99["value"] > 0 and p99["detail"]["baseline"] > 0 and p99["detail"]["errors"] == 0
