"""Logs (query and follow), resource stats and Prometheus metrics over HTTP (CONTRACT §4).

Reads ``request.app.state.gateway``: ``logs`` (LogStore), ``stats`` (StatsCollector), ``metrics``
(Metrics), ``perf`` (PerfTracker) and ``has_function(name)``; ``mqtt_stats()`` too when it has one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Send

from edgefc.api.routing import Router
from edgefc.api.state import gateway_of
from edgefc.errors import BadRequest, NotFound
from edgefc.observe.entry import GATEWAY_FUNCTION, Level, LogFilter, StoredEntry
from edgefc.observe.logs import DEFAULT_LIMIT, MAX_LIMIT, LogStore
from edgefc.observe.timeexpr import parse_duration, parse_time

if TYPE_CHECKING:
    from edgefc.gateway.core import Gateway

router = Router(tags=["observe"])
log = logging.getLogger("edgefc.api")

FOLLOW_BACKLOG = 100  # lines shown before following when no limit is given, like tail -f
HEARTBEAT_S = 15.0  # an SSE comment this often finds a vanished client even when the function is quiet
DEFAULT_HISTORY = "1h"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _limit(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"limit: {text!r} is not a whole number", details={"parameter": "limit"}) from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(
            f"limit: must be between 1 and {MAX_LIMIT}, got {value}", details={"parameter": "limit"}
        )
    return value


def _flag(text: str | None, param: str) -> bool:
    if text is None:
        return False
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{param}: {text!r} is not 1 or 0", details={"parameter": param})


async def _check_function(gateway: Gateway, store: LogStore, name: str) -> None:
    """404 unless ``name`` is deployed, is the gateway itself, or still has stored lines (removed since)."""
    if name == GATEWAY_FUNCTION or gateway.invoker.has(name):
        return
    if await store.aselect(name, since=None, until=None, filt=LogFilter(), limit=1, ascending=False):
        return
    raise NotFound(f"no function named {name!r}")


@router.get("/v1/functions/{name}/logs")
async def get_logs(
    name: str,
    request: Request,
    since: str | None = None,
    until: str | None = None,
    level: str | None = None,
    q: str | None = None,
    request_id: str | None = None,
    limit: str | None = None,
    order: str = "desc",
    follow: str | None = None,
) -> dict[str, Any] | StreamingResponse:
    """A function's log lines, newest first by default; ``follow=1`` streams new ones as server-sent events."""
    gateway = gateway_of(request)
    store: LogStore = gateway.logs
    now = time.time()
    since_t = parse_time(since, now=now, param="since") if since else None
    until_t = parse_time(until, now=now, param="until") if until else None
    if order not in ("asc", "desc"):
        raise BadRequest(f"order: must be asc or desc, got {order!r}", details={"parameter": "order"})
    filt = LogFilter(
        level=Level.parse(level) if level else Level.DEBUG,
        q=q or None,
        request_id=request_id or None,
    )
    following = _flag(follow, "follow")
    if following and until_t is not None:
        raise BadRequest("until: cannot be combined with follow=1", details={"parameter": "until"})
    await _check_function(gateway, store, name)
    if following:
        backlog = _limit(limit, FOLLOW_BACKLOG)
        store.check_follow()  # 429 before streaming when too many already follow
        return FollowResponse(
            _follow(store, name, filt, since_t, backlog),
            stall_s=gateway.config.logs.follow_stall_s,
            what=f"a follower of {name}'s log",
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    rows = await store.aselect(
        name,
        since=since_t,
        until=until_t,
        filt=filt,
        limit=_limit(limit, DEFAULT_LIMIT),
        ascending=order == "asc",
    )
    return {"entries": [row.to_dict() for row in rows]}


class FollowResponse(StreamingResponse):
    """Server-sent events that drop a follower whose connection takes no bytes for ``stall_s``.

    A client that never reads would otherwise hold its follower slot (``max_followers``), its queue and a
    blocked stream for as long as it stays connected. The connection is closed then; nothing is lost but what
    that follower did not read (the lines stay in the store).
    """

    def __init__(self, content: AsyncIterator[bytes], *, stall_s: float, what: str, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.stall_s = stall_s
        self.what = what

    async def stream_response(self, send: Send) -> None:
        async def bounded(message: Message) -> None:
            # uvicorn's send waits while the transport is paused (the peer's buffers are full): that wait is
            # what a reader that stopped reading looks like.
            await asyncio.wait_for(send(message), self.stall_s)

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            log.warning("dropped %s: it read nothing for %g s", self.what, self.stall_s)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # unsubscribe now, not when the generator is collected


def _event(entry: StoredEntry) -> bytes:
    return b"data: " + json.dumps(entry.to_dict(), ensure_ascii=False).encode() + b"\n\n"


async def _follow(
    store: LogStore, name: str, filt: LogFilter, since: float | None, backlog: int
) -> AsyncIterator[bytes]:
    # Subscribe before reading the backlog so no line falls between the two; ids tell the duplicates.
    sub = store.subscribe(name, filt)
    try:
        recent = await store.aselect(name, since=since, until=None, filt=filt, limit=backlog, ascending=False)
        last_id = recent[0].id if recent else 0
        for old in reversed(recent):
            yield _event(old)
        yield b": following\n\n"
        while True:
            try:
                new = await sub.get(HEARTBEAT_S)
            except StopAsyncIteration:
                return  # the store closed: the gateway is stopping
            if new is None:
                yield b": keep-alive\n\n"
            elif new.id == 0 or new.id > last_id:
                yield _event(new)
    finally:
        sub.close()


@router.get("/v1/stats")
async def get_stats(request: Request, history: str = DEFAULT_HISTORY) -> dict[str, Any]:
    """Host and per-function resources, performance figures, and ``history`` (a duration, 0 for none)."""
    gateway = gateway_of(request)
    span = 0.0 if history.strip() in ("0", "") else parse_duration(history)
    if span is None:
        raise BadRequest(
            f"history: {history!r} is not a duration such as 10m, 1h, 24h (or 0)",
            details={"parameter": "history"},
        )
    body = gateway.stats.snapshot(history_s=span)
    functions: dict[str, Any] = body["functions"]
    perf = gateway.perf
    for name in set(functions) | set(perf.functions()):
        figures = functions.setdefault(
            name, {"cpu_percent": 0.0, "memory_bytes": 0, "memory_limit_bytes": 0, "instances": []}
        )
        snap = perf.snapshot(name)
        figures["invocations_per_s"] = snap["invocations_per_s"]
        figures["duration_ms"] = snap["duration_ms"]
    body["mqtt"] = gateway.mqtt_stats()
    # The cloud agent's state (connected, offline, unauthorized …) when ``cloud.url`` is set: a wrong or rotated
    # token shows here as well as in the gateway's log.
    body["cloud"] = gateway.cloud.status() if gateway.cloud is not None else None
    return body  # type: ignore[no-any-return]


@router.get("/metrics")
async def get_metrics(request: Request) -> Response:
    """Prometheus text format of CONTRACT §6's metrics."""
    body, content_type = gateway_of(request).metrics.render()
    return Response(body, media_type=content_type)
