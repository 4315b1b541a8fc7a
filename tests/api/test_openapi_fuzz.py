"""Fuzz the gateway's API from its own ``/openapi.json``: no request, however malformed, gets a 5xx answer.

schemathesis generates valid and invalid requests for every operation; they go to a live gateway (process
sandbox) that has a function deployed, so the invoke, status, restart and log paths have something to hit.
One test per operation, so a failure names it; the operation list is checked against the live schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.e2e.gateway_harness import GatewayProcess, fn

EXAMPLES = 30  # per operation and generation mode
ECHO = "def handler(event, context):\n    return event\n"
DEPLOYMENT = {"version": "fuzz-1", "functions": [fn("echo", timeout_s=5)]}

OPERATIONS: dict[str, Any] = {
    "GET /healthz": None,
    "GET /v1/deployment": None,
    "PUT /v1/deployment": None,
    "POST /v1/deployment/rollback": None,
    "GET /v1/functions": None,
    "GET /v1/functions/{name}": None,
    "POST /v1/functions/{name}/invoke": None,
    "GET /v1/invocations/{inv_id}": None,
    "POST /v1/functions/{name}/restart": None,
    "GET /v1/functions/{name}/logs": None,
    "GET /v1/stats": None,
    "GET /metrics": None,
    "POST /v1/messages": None,
    "GET /v1/queues": None,
    "GET /v1/deadletters": None,
    "POST /v1/deadletters/{deadletter_id}/replay": None,  # once answered 500 for an id past SQLite's INTEGER
    "DELETE /v1/deadletters/{deadletter_id}": None,
}


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("fuzz") / "data").start()
    gw.deploy(DEPLOYMENT, {"echo": ECHO})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def api_schema(live_gateway: GatewayProcess) -> Any:
    """The schema as the live gateway serves it (fetched with the token)."""
    assert live_gateway.client is not None
    fetched = live_gateway.client.get("/openapi.json")
    assert fetched.status_code == 200
    return schemathesis.openapi.from_dict(fetched.json())


def operations(schema: Any) -> dict[str, Any]:
    return {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


def test_every_listed_operation_is_live(api_schema: Any) -> None:
    assert set(OPERATIONS) <= set(operations(api_schema))  # a renamed path must be renamed here too


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


@pytest.mark.parametrize("label", [pytest.param(k, marks=v) if v else k for k, v in OPERATIONS.items()])
def test_no_request_makes_the_gateway_answer_5xx(live_gateway: GatewayProcess, api_schema: Any, label: str) -> None:
    _fuzz_operation(live_gateway, api_schema, label)


def test_no_request_to_any_other_operation_makes_the_gateway_answer_5xx(live_gateway: GatewayProcess, api_schema: Any) -> None:
    """Operations added since the list above was written are fuzzed too (one test, until they are listed)."""
    others = sorted(set(operations(api_schema)) - set(OPERATIONS))
    failures = []
    for label in others:
        try:
            _fuzz_operation(live_gateway, api_schema, label)
        except (Exception, BaseExceptionGroup) as exc:  # a schemathesis FailureGroup is a BaseExceptionGroup
            failures.append(f"{label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz_operation(live_gateway: GatewayProcess, api_schema: Any, label: str) -> None:
    assert live_gateway.client is not None
    if not live_gateway.client.get("/v1/functions/echo").is_success:  # a fuzzed deploy or rollback replaced it
        live_gateway.deploy(DEPLOYMENT, {"echo": ECHO})
    operation = operations(api_schema)[label]
    seen: dict[int, int] = {}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            for status, count in _fuzz(operation, mode, live_gateway).items():
                seen[status] = seen.get(status, 0) + count
        except Unsatisfiable:
            # Nothing of this operation can be made invalid (no query, header or body): positive only.
            assert mode is GenerationMode.NEGATIVE and label not in ("PUT /v1/deployment", "POST /v1/messages")
    assert sum(seen.values()) >= 1
    if label == "POST /v1/functions/{name}/invoke":
        assert any(400 <= s < 500 for s in seen)  # malformed requests were really sent
    assert live_gateway.client.get("/healthz").status_code == 200
