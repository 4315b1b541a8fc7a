"""Deployments of an instance: made from its current assignments, reported on by its gateway, rolled back.

One instance is one gateway, so a deployment has one status: ``pending`` (made, not yet picked up),
``downloading``, ``applying``, then ``succeeded``, ``failed`` or ``rolled_back`` (the gateway is still on its
previous version). Numbers count 1, 2, … per instance; the database's key on (instance, number) makes two
deploys at once end with one winner and a Conflict for the other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from edgefc.cloud import db
from edgefc.cloud.catalog import ACTIVE, version_row
from edgefc.cloud.fleet import assigned_entries, instance_row, online
from edgefc.cloud.store import Store, iso, now
from edgefc.cloud.validate import check_manifest
from edgefc.errors import Conflict, NotFound, ValidationError

STAGES = ("pending", "downloading", "applying", "succeeded", "failed", "rolled_back")
FINAL = ("succeeded", "failed", "rolled_back")
VERSION_PREFIX = "cloud-"  # the manifest version a gateway shows for cloud deployment N: cloud-N


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


class Deployments:
    """Deploy, list, get, roll back; record the stages a gateway reports."""

    def __init__(self, store: Store) -> None:
        self.store = store

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
                try:
                    shas[assignment.function] = version_row(conn, assignment.function, assignment.version).sha256
                except NotFound as exc:
                    problems.append(f"assignments.{assignment.function}.version: {exc.message}")
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
        latest = latest_row(conn, instance_id)
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
        conn.execute(insert(db.deployments).values(
            instance_id=instance_id, number=number, status="pending", message="waiting for the gateway",
            traceback=None, manifest=manifest, artifacts=shas, versions=versions,
            stages=[_stage("pending", "waiting for the gateway")], rollback_of=rollback_of, created_at=at, updated_at=at,
        ))  # fmt: skip
        return view(deployment_row(conn, instance_id, number))

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

        def work(conn: Connection) -> dict[str, Any]:
            row = deployment_row(conn, instance_id, number)
            if row.status in FINAL or STAGES.index(stage) < STAGES.index(row.status):
                return view(row)
            conn.execute(update(db.deployments)
                         .where(db.deployments.c.instance_id == instance_id, db.deployments.c.number == number)
                         .values(status=stage, message=message[:4000], traceback=(traceback or None),
                                 stages=[*row.stages, _stage(stage, message[:4000])], updated_at=now()))  # fmt: skip
            return view(deployment_row(conn, instance_id, number))

        return await self.store.run(work, notify=(f"events:{instance_id}",))

    def desired(self, conn: Connection, instance_id: str, after: int) -> dict[str, Any] | None:
        """The deployment the gateway should run, when newer than ``after``: the latest one not failed."""
        row = conn.execute(select(db.deployments)
                           .where(db.deployments.c.instance_id == instance_id,
                                  db.deployments.c.status.not_in(("failed", "rolled_back")))
                           .order_by(db.deployments.c.number.desc()).limit(1)).first()  # fmt: skip
        if row is None or row.number <= after:
            return None
        return {"number": row.number, "manifest": row.manifest, "artifacts": row.artifacts}

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
