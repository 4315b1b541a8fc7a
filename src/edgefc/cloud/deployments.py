"""Deployments of an instance: made from its current assignments, reported on by its gateway, rolled back.

One instance is one gateway, so a deployment has one status: ``pending`` (made, not yet picked up),
``downloading``, ``applying``, then ``succeeded``, ``failed`` or ``rolled_back`` (the gateway is still on its
previous version). Numbers count 1, 2, … per instance; the database's key on (instance, number) makes two
deploys at once end with one winner and a Conflict for the other.
"""

from __future__ import annotations

import builtins
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from edgefc.cloud import db
from edgefc.cloud.catalog import ACTIVE
from edgefc.cloud.fleet import assigned_entries, instance_row, online
from edgefc.cloud.store import Batcher, Store, iso, now
from edgefc.cloud.validate import check_manifest
from edgefc.errors import Conflict, NotFound, ValidationError

STAGES = ("pending", "downloading", "applying", "succeeded", "failed", "rolled_back")
FINAL = ("succeeded", "failed", "rolled_back")
VERSION_PREFIX = "cloud-"  # the manifest version a gateway shows for cloud deployment N: cloud-N
_SUMMARY = [column for column in db.deployments.c if column.name != "manifest"]  # what a view needs
_KEY = tuple_(db.deployments.c.instance_id, db.deployments.c.number)
_LATEST = (select(*_SUMMARY).where(db.deployments.c.instance_id == bindparam("b_instance"))
           .order_by(db.deployments.c.number.desc()).limit(1))  # fmt: skip
_INSERT = insert(db.deployments)
# One statement for many rows (executemany): the bound names differ from the columns'.
_RECORD = (update(db.deployments)
           .where(db.deployments.c.instance_id == bindparam("b_instance"), db.deployments.c.number == bindparam("b_number"))
           .values(status=bindparam("b_status"), message=bindparam("b_message"), traceback=bindparam("b_traceback"),
                   stages=bindparam("b_stages", type_=db.deployments.c.stages.type), updated_at=bindparam("b_at")))  # fmt: skip


def view(row: Any, *, manifest: bool = False) -> dict[str, Any]:
    out = {"instance": row.instance_id, "number": row.number, "status": row.status, "message": row.message,
           "traceback": row.traceback, "stages": row.stages, "versions": row.versions, "artifacts": row.artifacts,
           "rollback_of": row.rollback_of, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}  # fmt: skip
    if manifest:
        out["manifest"] = row.manifest
    return out


def deployment_row(conn: Connection, instance_id: str, number: int) -> Any:
    """Raises NotFound."""
    row = conn.execute(select(db.deployments).where(db.deployments.c.instance_id == instance_id,
                                                    db.deployments.c.number == number)).first()  # fmt: skip
    if row is None:
        raise NotFound(f"instance {instance_id} has no deployment {number}")
    return row


def latest_row(conn: Connection, instance_id: str) -> Any:
    return conn.execute(select(db.deployments).where(db.deployments.c.instance_id == instance_id)
                        .order_by(db.deployments.c.number.desc()).limit(1)).first()  # fmt: skip


def _stage(stage: str, message: str) -> dict[str, Any]:
    return {"stage": stage, "at": iso(now()), "message": message}


def _advance(row: Any, stage: str, message: str, trace: str | None = None) -> None:
    """Move a deployment (its columns as attributes) to ``stage`` in memory; ``_write`` stores it."""
    row.status, row.message, row.traceback, row.updated_at = stage, message, trace, now()
    row.stages = [*row.stages, _stage(stage, message)]


def _write(conn: Connection, rows: Any) -> None:
    params = [{"b_instance": r.instance_id, "b_number": r.number, "b_status": r.status, "b_message": r.message,
               "b_traceback": r.traceback, "b_stages": r.stages, "b_at": r.updated_at} for r in rows]  # fmt: skip
    if params:
        conn.execute(_RECORD, params)


class Deployments:
    """Deploy, list, get, roll back; record the stages a gateway reports."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._reports: Batcher[tuple[str, int, str, str, str | None], dict[str, Any]] = Batcher(store, self._record)

    async def deploy(self, instance_id: str) -> dict[str, Any]:
        """Deploy the instance's current assignments, routes and devices.

        Raises NotFound, ValidationError (the manifest as the gateway would refuse it), or Conflict when a
        deployment is being applied or another deploy to this instance won the race.
        """

        def work(conn: Connection) -> dict[str, Any]:
            row = instance_row(conn, instance_id)
            entries = assigned_entries(conn, instance_id)
            shas: dict[str, str] = {}
            problems: list[str] = []
            for assignment, _ in entries:
                if assignment.sha256 is None:
                    problems.append(f"assignments.{assignment.function}.version: function {assignment.function!r} "
                                    f"has no version {assignment.version}")  # fmt: skip
                else:
                    shas[assignment.function] = assignment.sha256
            if problems:
                raise ValidationError(problems)
            manifest = {"functions": [entry for _, entry in entries], "routes": row.routes, "devices": row.devices}
            versions = {a.function: a.version for a, _ in entries}
            return self._insert(conn, row, manifest, shas, versions, None)

        return await self._made(instance_id, work)

    async def rollback(self, instance_id: str, number: int) -> dict[str, Any]:
        """A new deployment with the manifest and code of an earlier succeeded one.

        Raises NotFound, Conflict (it did not succeed, one is being applied, or its code was deleted since).
        """

        def work(conn: Connection) -> dict[str, Any]:
            old = deployment_row(conn, instance_id, number)
            if old.status != "succeeded":
                raise Conflict(f"deployment {number} of {instance_id} ended {old.status}; only a succeeded "
                               "deployment can be rolled back to")  # fmt: skip
            for function, sha in old.artifacts.items():
                if conn.execute(select(db.artifacts.c.sha256).where(db.artifacts.c.sha256 == sha)).first() is None:
                    raise Conflict(f"the code of {function!r} in deployment {number} was deleted since")
            manifest = {k: v for k, v in old.manifest.items() if k != "version"}
            return self._insert(conn, instance_row(conn, instance_id), manifest, old.artifacts, old.versions, number)

        return await self._made(instance_id, work)

    async def _made(self, instance_id: str, work: Any) -> dict[str, Any]:
        try:
            made = await self.store.run(work, notify=(f"instance:{instance_id}", f"events:{instance_id}"))
        except IntegrityError:
            raise Conflict(f"another deploy to instance {instance_id} was made at the same moment and won; "
                           "yours was not made (see its deployments)") from None  # fmt: skip
        return made

    def _insert(self, conn: Connection, instance: Any, manifest: dict[str, Any], shas: dict[str, str],
                versions: dict[str, int], rollback_of: int | None) -> dict[str, Any]:  # fmt: skip
        """Add deployment N+1. One still under way on an online gateway refuses it (Conflict); one an offline
        gateway never picked up is superseded, so an operator is never stuck behind a gateway that is away."""
        instance_id = instance.id
        latest = conn.execute(_LATEST, {"b_instance": instance_id}).first()
        number = (latest.number if latest else 0) + 1
        if latest is not None and (latest.status in ("downloading", "applying")
                                   or (latest.status == "pending" and online(instance, now()))):  # fmt: skip
            raise Conflict(f"deployment {latest.number} of instance {instance_id} is under way "
                           f"({latest.status}); deploy again once it finished", details={"number": latest.number})  # fmt: skip
        manifest = {"version": f"{VERSION_PREFIX}{number}", **manifest}
        check_manifest(manifest, source=f"deployment {number}")
        at = now()
        if latest is not None and latest.status == "pending":
            message = f"superseded by deployment {number} before the gateway picked it up"
            conn.execute(update(db.deployments)
                         .where(db.deployments.c.instance_id == instance_id, db.deployments.c.number == latest.number,
                                db.deployments.c.status == "pending")
                         .values(status="failed", message=message, updated_at=at,
                                 stages=[*latest.stages, _stage("failed", message)]))  # fmt: skip
        made = {"instance_id": instance_id, "number": number, "status": "pending", "message": "waiting for the gateway",
                "traceback": None, "manifest": manifest, "artifacts": shas, "versions": versions,
                "stages": [_stage("pending", "waiting for the gateway")], "rollback_of": rollback_of, "created_at": at,
                "updated_at": at}  # fmt: skip
        conn.execute(_INSERT, made)
        return view(SimpleNamespace(**made))

    async def list(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's deployments, newest first. Raises NotFound."""

        def work(conn: Connection) -> list[dict[str, Any]]:
            instance_row(conn, instance_id)
            rows = conn.execute(select(db.deployments).where(db.deployments.c.instance_id == instance_id)
                                .order_by(db.deployments.c.number.desc()))  # fmt: skip
            return [view(r) for r in rows]

        return await self.store.run(work)

    async def get(self, instance_id: str, number: int | None = None) -> dict[str, Any] | None:
        """One deployment with its manifest (the latest when ``number`` is None, then None if there is none).

        Raises NotFound.
        """

        def work(conn: Connection) -> dict[str, Any] | None:
            instance_row(conn, instance_id)
            row = latest_row(conn, instance_id) if number is None else deployment_row(conn, instance_id, number)
            return view(row, manifest=True) if row is not None else None

        return await self.store.run(work)

    async def report(self, instance_id: str, number: int, stage: str, message: str,
                     traceback: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Record a stage the gateway reached. Stages never go backwards and a finished deployment stays finished.

        Raises NotFound, ValidationError for an unknown stage.
        """
        if stage not in STAGES[1:]:
            raise ValidationError([f"stage: must be one of {', '.join(STAGES[1:])}, got {stage!r}"])
        # Reports of many gateways arriving together share one transaction (a fan-out brings thousands).
        return await self._reports.submit((instance_id, number, stage, message[:4000], traceback or None))

    def _record(self, conn: Connection, items: builtins.list[tuple[str, int, str, str, str | None]],
                ) -> tuple[builtins.list[dict[str, Any] | Exception], builtins.list[str]]:  # fmt: skip
        """Record a batch of stage reports: one read, one executemany write, the changed instances' topics."""
        rows = {(r.instance_id, r.number): SimpleNamespace(**r._asdict()) for r in conn.execute(
            select(*_SUMMARY).where(_KEY.in_(sorted({(i[0], i[1]) for i in items}))))}  # fmt: skip
        changed: dict[tuple[str, int], Any] = {}
        results: builtins.list[dict[str, Any] | Exception] = []
        for instance_id, number, stage, message, trace in items:
            row = rows.get((instance_id, number))
            if row is None:
                results.append(NotFound(f"instance {instance_id} has no deployment {number}"))
                continue
            if row.status not in FINAL and STAGES.index(stage) >= STAGES.index(row.status):
                _advance(row, stage, message, trace)
                changed[(instance_id, number)] = row
            results.append(view(row))
        _write(conn, changed.values())
        return results, [f"events:{instance_id}" for instance_id, _ in changed]

    def desired_many(self, conn: Connection, after: dict[str, int]) -> dict[str, dict[str, Any]]:
        """For each instance, the deployment it should run when newer than ``after[instance]``: the latest one not
        failed."""
        live = db.deployments.c.status.not_in(("failed", "rolled_back"))
        latest = conn.execute(select(db.deployments.c.instance_id, func.max(db.deployments.c.number))
                              .where(db.deployments.c.instance_id.in_(sorted(after)), live)
                              .group_by(db.deployments.c.instance_id)).all()  # fmt: skip
        wanted = sorted((instance_id, number) for instance_id, number in latest if number > after[instance_id])
        if not wanted:
            return {}
        # The manifest is read only for what is handed out; an up-to-date gateway's look costs one small query.
        # Handing out does not move the deployment to "downloading": the poll's answer may never reach a gateway
        # that was just cut off, and it stays "pending" (superseded by the next deploy) until the gateway says so.
        return {row.instance_id: {"number": row.number, "manifest": row.manifest, "artifacts": row.artifacts}
                for row in conn.execute(select(db.deployments).where(_KEY.in_(wanted)))}  # fmt: skip

    def settle(self, conn: Connection, instance_id: str, version: str | None) -> bool:
        """A status report says the gateway runs ``cloud-N``: an unfinished deployment N succeeded after all
        (the gateway restarted before it could report). Returns whether anything changed."""
        if not version or not version.startswith(VERSION_PREFIX) or not version[len(VERSION_PREFIX):].isdigit():
            return False
        number = int(version[len(VERSION_PREFIX):])
        row = conn.execute(select(db.deployments).where(db.deployments.c.instance_id == instance_id,
                                                        db.deployments.c.number == number)).first()  # fmt: skip
        if row is None or row.status not in ACTIVE:
            return False
        message = "the gateway reports it running"
        conn.execute(update(db.deployments)
                     .where(db.deployments.c.instance_id == instance_id, db.deployments.c.number == number)
                     .values(status="succeeded", message=message, updated_at=now(),
                             stages=[*row.stages, _stage("succeeded", message)]))  # fmt: skip
        return True
