"""Fuzz the gateway's API from its own ``/openapi.json``: no request, however malformed, gets a 5xx answer.

schemathesis generates valid and invalid requests for every operation; they go to a live gateway (process
sandbox) that has a function deployed, so the invoke, status, restart and log paths have something to hit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.e2e.gateway_harness import GatewayProcess, fn

ECHO = "def handler(event, context):\n    return event\n"

# 502/504 are how a function's own failure answers a sync invoke (CONTRACT §4), not the gateway failing;
# the echo function never fails, so they should not appear either — but a 500 or 503 never may.
pytestmark = pytest.mark.timeout(120)


EXAMPLES = 20  # per operation and generation mode
DEPLOYMENT = {"version": "fuzz-1", "functions": [fn("echo", timeout_s=5)]}


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("fuzz") / "data").start()
    gw.deploy(DEPLOYMENT, {"echo": ECHO})
    yield gw
    assert gw.client is None or gw.client.get("/healthz").status_code == 200
    gw.stop()


def _fuzz(operation: Any, mode: GenerationMode, gw: GatewayProcess) -> dict[int, int]:
    """Send up to EXAMPLES generated requests for ``operation``; returns how many got each status."""
    auth = {"Authorization": f"Bearer {gw.token}"}
    statuses: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: schemathesis.Case) -> None:
        if case.query and str(case.query.get("follow", "")).strip().lower() in ("1", "true", "yes", "on"):
            case.query["follow"] = "0"  # a followed log never ends: the one change made to a generated request
        response = case.call_and_validate(base_url=gw.url, headers=auth, checks=[not_a_server_error], timeout=15)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    one()
    return statuses


def test_no_request_makes_the_gateway_answer_5xx(live_gateway: GatewayProcess) -> None:
    assert live_gateway.client is not None
    fetched = live_gateway.client.get("/openapi.json")
    assert fetched.status_code == 200
    schema = schemathesis.openapi.from_dict(fetched.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"PUT /v1/deployment", "POST /v1/functions/{name}/invoke", "GET /v1/invocations/{inv_id}"} <= labels
    failures: list[str] = []
    seen: dict[str, dict[int, int]] = {label: {} for label in labels}
    negated_nothing: set[str] = set()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if not live_gateway.client.get("/v1/functions/echo").is_success:  # a fuzzed deploy or rollback replaced it
                live_gateway.deploy(DEPLOYMENT, {"echo": ECHO})
            try:
                for status, count in _fuzz(operation, mode, live_gateway).items():
                    seen[operation.label][status] = seen[operation.label].get(status, 0) + count
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                negated_nothing.add(operation.label)  # no part of it can be made invalid (no query, no body)
            except Exception as exc:  # noqa: BLE001 — collect every operation's failure, then report them all
                failures.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert {"PUT /v1/deployment", "POST /v1/functions/{name}/invoke", "POST /v1/messages"}.isdisjoint(negated_nothing)
    assert live_gateway.client.get("/healthz").status_code == 200
    print(json.dumps(seen, indent=1))
    assert all(sum(counts.values()) >= 5 for counts in seen.values()), seen  # every operation really was exercised
    assert seen["POST /v1/functions/{name}/invoke"].get(200, 0) + seen["POST /v1/functions/{name}/invoke"].get(202, 0) > 0
