"""What connects the cloud to live gateways: the long poll, status reports, live requests and event streams.

A live request (a log query) is a row in ``requests``: the replica serving the operator inserts it and wakes
the instance's topic; whichever replica holds the gateway's long poll hands it over; the gateway's answer is
stored on the row and wakes the asking replica. Nothing here needs the gateway and the operator on one replica.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from edgefc.cloud import db
from edgefc.cloud.deployments import Deployments, deployment_row, latest_row, view
from edgefc.cloud.fleet import instance_row, online
from edgefc.cloud.notify import Notifier
from edgefc.cloud.store import Batcher, Store, iso, now
from edgefc.errors import GatewayOffline, ValidationError

POLL_WAIT_S = 25.0  # how long a long poll is held when nothing changes
ANSWER_WAIT_S = 10.0  # how long an operator waits for a gateway's answer
EVENT_HEARTBEAT_S = 15.0
TOUCH_EVERY_S = 10.0  # well inside fleet.ONLINE_WINDOW_S
MAX_STATUS_BYTES = 256 * 1024  # what a status report may weigh; the agent trims below this
LOG_PARAMS = ("function", "since", "until", "level", "q", "request_id", "limit", "order")


class Gateways:
    """The gateway side of the service, and the live views the operator reads."""

    def __init__(self, store: Store, notifier: Notifier, deployments: Deployments) -> None:
        self.store = store
        self.notifier = notifier
        self.deployments = deployments
        self._touched: dict[str, float] = {}  # instance → when this replica last wrote its last_seen
        # A deploy to a fleet wakes a thousand long polls at once: their looks share transactions.
        self._looks: Batcher[tuple[str, int, bool], tuple[dict[str, Any] | None, list[dict[str, Any]]]] = Batcher(
            store, self._look)

    def _look(self, conn: Connection, items: list[tuple[str, int, bool]],
              ) -> tuple[list[tuple[dict[str, Any] | None, list[dict[str, Any]]] | Exception], list[str]]:  # fmt: skip
        """For each (instance, after, touch): the deployment newer than ``after`` and its open live requests."""
        ids = sorted({instance_id for instance_id, _, _ in items})
        touched = sorted({instance_id for instance_id, _, touch in items if touch})
        if touched:
            conn.execute(update(db.instances).where(db.instances.c.id.in_(touched)).values(last_seen=now()))
        # Only fresh requests: one whose asker is gone (a replica stopped mid-wait) must not keep waking the poll.
        asks: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute(select(db.requests).where(db.requests.c.instance_id.in_(ids),
                                                        db.requests.c.answer.is_(None),
                                                        db.requests.c.created_at > now() - ANSWER_WAIT_S)):  # fmt: skip
            asks.setdefault(r.instance_id, []).append({"id": r.id, "kind": r.kind, "params": r.params})
        floor: dict[str, int] = {}
        for instance_id, after, _ in items:
            floor[instance_id] = min(after, floor.get(instance_id, after))
        handed = self.deployments.desired_many(conn, floor)
        results: list[tuple[dict[str, Any] | None, list[dict[str, Any]]] | Exception] = []
        for instance_id, after, _ in items:
            deployment = handed.get(instance_id)
            results.append((deployment if deployment and deployment["number"] > after else None, asks.get(instance_id, [])))
        return results, []

    async def desired(self, instance_id: str, after: int, wait: float = POLL_WAIT_S) -> dict[str, Any]:
        """Long poll: the deployment newer than ``after`` and open live requests, as soon as there are any.

        Returns ``{"deployment": … | None, "requests": [...], "server_time"}`` after at most ``wait`` seconds.
        """

        deadline = now() + max(0.0, min(wait, 60.0))
        with self.notifier.subscribe(f"instance:{instance_id}") as waiter:
            while True:
                # last_seen needs to be fresh to within the online window, not to every poll: a write saved.
                touch = now() - self._touched.get(instance_id, 0.0) >= TOUCH_EVERY_S
                deployment, asks = await self._looks.submit((instance_id, after, touch))
                if touch:
                    self._touched[instance_id] = now()
                left = deadline - now()
                if deployment is not None or asks or left <= 0 or self.notifier.closed:
                    return {"deployment": deployment, "requests": asks, "server_time": now()}
                await waiter.wait(left)

    async def report_status(self, instance_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store a gateway's status (functions, host figures, deployment); its clock only informs ``clock_skew_s``.

        Raises ValidationError for a body that is not a status.
        """
        functions, host = body.get("functions"), body.get("host")
        if not isinstance(functions, list) or not isinstance(host, dict):
            raise ValidationError(["status: needs functions (a list) and host (a mapping)"])
        sent = body.get("time")
        received = now()
        skew = float(sent) - received if isinstance(sent, int | float) and not isinstance(sent, bool) else None
        status = {"functions": functions, "host": host, "deployment": body.get("deployment"), "agent": body.get("agent")}
        # The console's extras, kept only when they have the right shape.
        if isinstance(body.get("devices"), list):
            status["devices"] = body["devices"]
        if isinstance(body.get("history"), dict):
            status["history"] = body["history"]
        version = (body.get("deployment") or {}).get("version") if isinstance(body.get("deployment"), dict) else None

        def work(conn: Connection) -> bool:
            if "history" not in status:  # sent once a minute, not with every report: keep the last one
                before = conn.execute(select(db.instances.c.status).where(db.instances.c.id == instance_id)).scalar()
                if isinstance(before, dict) and "history" in before:
                    status["history"] = before["history"]
            conn.execute(update(db.instances).where(db.instances.c.id == instance_id)
                         .values(status=status, status_at=received, last_seen=received, clock_skew_s=skew))  # fmt: skip
            return self.deployments.settle(conn, instance_id, version)

        await self.store.run(work, notify=(f"events:{instance_id}",))
        return {"received_at": iso(received), "clock_skew_s": skew}

    async def status(self, instance_id: str) -> dict[str, Any]:
        """The last reported status, ``reported_at`` (cloud time), ``online`` and the clock skew. Raises NotFound."""

        def work(conn: Connection) -> dict[str, Any]:
            row = instance_row(conn, instance_id)
            status = row.status or {}
            return {"instance": instance_id, "online": online(row, now()), "last_seen": iso(row.last_seen),
                    "reported_at": iso(row.status_at), "clock_skew_s": row.clock_skew_s,
                    "functions": status.get("functions", []), "host": status.get("host", {}),
                    "deployment": status.get("deployment"), "agent": status.get("agent"),
                    **{k: status[k] for k in ("devices", "history") if k in status}}  # fmt: skip

        return await self.store.run(work)

    async def query_logs(self, instance_id: str, params: dict[str, str]) -> tuple[int, Any]:
        """Ask the gateway for log lines (its own query, CONTRACT §4) → (HTTP status, body).

        Raises NotFound, ValidationError (no ``function``), GatewayOffline when it is offline or silent.
        """
        unknown = sorted(set(params) - set(LOG_PARAMS))
        if unknown or not params.get("function"):
            problems = [f"{k}: unknown parameter (use {', '.join(LOG_PARAMS)})" for k in unknown]
            raise ValidationError(problems or ["function: name the function whose logs to query"])
        request_id = secrets.token_hex(8)

        def ask(conn: Connection) -> None:
            row = instance_row(conn, instance_id)
            if not online(row, now()):
                raise GatewayOffline(f"instance {instance_id} is offline (last seen {iso(row.last_seen) or 'never'})")
            conn.execute(delete(db.requests).where(db.requests.c.created_at < now() - 6 * ANSWER_WAIT_S))  # leftovers
            conn.execute(insert(db.requests).values(id=request_id, instance_id=instance_id, kind="logs",
                                                    params=params, created_at=now()))  # fmt: skip

        def answer(conn: Connection) -> Any:
            return conn.execute(select(db.requests.c.answer).where(db.requests.c.id == request_id)).scalar()

        with self.notifier.subscribe(f"answer:{request_id}") as waiter:
            await self.store.run(ask, notify=(f"instance:{instance_id}",))
            try:
                deadline = now() + ANSWER_WAIT_S
                while (got := await self.store.run(answer)) is None:
                    if now() >= deadline:
                        raise GatewayOffline(f"instance {instance_id} did not answer within {ANSWER_WAIT_S:g} s")
                    await waiter.wait(deadline - now())
            finally:
                await self.store.run(lambda conn: conn.execute(delete(db.requests).where(db.requests.c.id == request_id)))
        return int(got.get("status", 200)), got.get("body")

    async def answer(self, instance_id: str, request_id: str, body: dict[str, Any]) -> None:
        """Store a gateway's answer to a live request (a late answer to a request given up on is dropped)."""
        status = body.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValidationError(["status: must be the HTTP status of the answer"])
        answer = {"status": status, "body": body.get("body")}
        await self.store.run(lambda conn: conn.execute(
            update(db.requests).where(db.requests.c.id == request_id, db.requests.c.instance_id == instance_id)
            .values(answer=answer)), notify=(f"answer:{request_id}",))  # fmt: skip

    async def events(self, instance_id: str, number: int | None = None) -> AsyncIterator[str]:
        """Server-sent events: the deployment (``number`` or the latest) and the gateway's status, on each change.

        The first event is sent at once; then one per change, and a comment every 15 s. Raises NotFound first.
        """

        def snapshot(conn: Connection) -> dict[str, Any]:
            row = instance_row(conn, instance_id)
            dep = latest_row(conn, instance_id) if number is None else deployment_row(conn, instance_id, number)
            return {"instance": instance_id, "online": online(row, now()), "reported_at": iso(row.status_at),
                    "deployment": view(dep) if dep is not None else None,
                    "functions": [{"name": f.get("name"), "state": f.get("state"), "version": f.get("version")}
                                  for f in (row.status or {}).get("functions", []) if isinstance(f, dict)]}  # fmt: skip

        await self.store.run(snapshot)  # NotFound before the stream starts
        last = ""
        with self.notifier.subscribe(f"events:{instance_id}") as waiter:
            while True:
                text = json.dumps(await self.store.run(snapshot), sort_keys=True)
                if text != last:
                    last = text
                    yield f"event: state\ndata: {text}\n\n"
                if not await waiter.wait(EVENT_HEARTBEAT_S):
                    yield ": keep-alive\n\n"
                if self.notifier.closed:
                    return
