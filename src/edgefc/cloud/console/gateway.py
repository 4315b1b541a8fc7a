"""Per-gateway pages: its functions (state, restarts, CPU and memory over time), devices, and logs.

Everything shown comes from the gateway's last status report (``gateways.status``) or, for logs, from the
gateway's own log query asked live through the cloud (``gateways.query_logs``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from edgefc.cloud.console import live
from edgefc.cloud.console.figures import Figures
from edgefc.cloud.console.web import Console, shows_errors
from edgefc.errors import EdgefcError

LOG_FILTERS = ("function", "level", "q", "since", "until", "request_id")
LEVELS = ("", "debug", "info", "warning", "error", "critical")
FOLLOW_EVERY_S = 1.0  # how often a follow asks the gateway for lines newer than the last one
FOLLOW_RETRY_S = 3.0


def routes(console: Console) -> APIRouter:
    """``/console/instances/{id}/gateway`` (status), ``…/logs`` and their live streams."""
    router = APIRouter(prefix="/console/instances/{instance_id}", include_in_schema=False)
    service = console.service
    gateways = service.gateways
    notifier = service.notifier
    figures = Figures()
    guard = shows_errors(console)

    async def status_view(instance: dict[str, Any]) -> dict[str, Any]:
        status = await gateways.status(instance["id"])
        figures.add(instance["id"], status)
        reported = status.get("devices")
        # Until reports carry the gateway's devices, show the ones the instance is configured with.
        devices = reported if isinstance(reported, list) else [
            {**d, "properties": None} for d in instance.get("devices") or []]
        return {"report": status, "charts": figures.series(instance["id"], status), "devices": devices,
                "devices_reported": isinstance(reported, list)}

    @router.get("/gateway")
    @guard
    async def gateway_page(request: Request, instance_id: str) -> Response:
        session = console.viewer(request)
        instance = await service.fleet.get_instance(instance_id)
        return console.page(request, "gateway.html", session, instance=instance, **await status_view(instance))

    @router.get("/gateway/stream")
    async def gateway_stream(request: Request, instance_id: str) -> Response:
        console.viewer(request)
        instance = await service.fleet.get_instance(instance_id)

        async def render() -> str:
            return console.renderer.fragment("_status.html", instance=instance, **await status_view(instance))

        return live.fragments(request, service.notifier, instance_id, render)

    @router.get("/logs")
    @guard
    async def logs_page(request: Request, instance_id: str) -> Response:
        session = console.viewer(request)
        instance = await service.fleet.get_instance(instance_id)
        names = [a["function"] for a in instance["assignments"]]
        filters = {k: request.query_params.get(k, "").strip() for k in LOG_FILTERS}
        if not filters["function"] and names:
            filters["function"] = names[0]
        entries: list[dict[str, Any]] = []
        problem = ""
        if filters["function"]:
            params = {k: v for k, v in filters.items() if v}
            params["limit"] = "200"
            try:
                code, body = await gateways.query_logs(instance_id, params)
            except EdgefcError as exc:
                problem = exc.message
            else:
                if code == 200 and isinstance(body, dict):
                    entries = list(body.get("entries") or [])
                else:
                    problem = _error_text(code, body)
        return console.page(request, "logs.html", session, instance=instance, names=names, filters=filters,
                            levels=LEVELS, entries=entries, problem=problem)

    @router.get("/logs/follow")
    async def logs_follow(request: Request, instance_id: str) -> Response:
        console.viewer(request)
        await service.fleet.get_instance(instance_id)
        params = {k: request.query_params.get(k, "").strip() for k in LOG_FILTERS if k != "until"}
        params = {k: v for k, v in params.items() if v}
        start = request.headers.get("last-event-id") or _rfc3339(dt.datetime.now(dt.UTC))

        async def body() -> AsyncIterator[bytes]:
            since = start
            seen: set[tuple[Any, ...]] = set()
            yield b": following\n\n"
            # The pause between questions waits on a topic no one else uses: only the replica's close wakes it.
            with notifier.subscribe(f"console-follow:{instance_id}") as pause:
                while not notifier.closed:
                    query = {**params, "since": since, "order": "asc", "limit": "500"}
                    try:
                        code, answer = await gateways.query_logs(instance_id, query)
                    except EdgefcError as exc:
                        yield live.event("problem", exc.message)
                        await pause.wait(FOLLOW_RETRY_S)
                        continue
                    if code != 200 or not isinstance(answer, dict):
                        yield live.event("problem", _error_text(code, answer))
                        await pause.wait(FOLLOW_RETRY_S)
                        continue
                    for entry in answer.get("entries") or []:
                        key = (entry.get("time"), entry.get("instance"), entry.get("request_id"),
                               entry.get("message"))
                        if key in seen:
                            continue  # ``since`` is inclusive: lines at the boundary come twice
                        if entry.get("time") != since:
                            seen.clear()
                        seen.add(key)
                        since = str(entry.get("time") or since)
                        row = console.renderer.fragment("_logrow.html", e=entry)
                        yield live.event("row", row, event_id=since)
                    await pause.wait(FOLLOW_EVERY_S)

        return live.stream(body())

    return router


def _rfc3339(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_text(code: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f"the gateway answered {code}: {body['error'].get('message', '')}"
    return f"the gateway answered {code}"
