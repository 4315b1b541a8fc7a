"""Functions and their numbered code versions; the code itself is stored once per sha256 in ``artifacts``."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from edgefc.cloud import db
from edgefc.cloud.store import Store, iso, now
from edgefc.cloud.validate import FUNCTION_KEYS, check_bundle, check_function
from edgefc.errors import Conflict, NotFound, ValidationError

ACTIVE = ("pending", "downloading", "applying")
ARTIFACT_CACHE_BYTES = 64 << 20


def _function(row: Any) -> dict[str, Any]:
    return {"name": row.name, "runtime": row.runtime, "handler": row.handler, "initializer": row.initializer,
            "created_at": iso(row.created_at)}  # fmt: skip


def _version(row: Any) -> dict[str, Any]:
    return {"function": row.function, "number": row.number, "sha256": row.sha256, "size": row.size,
            "created_at": iso(row.created_at)}  # fmt: skip


def function_row(conn: Connection, name: str) -> Any:
    """The function's row; raises NotFound."""
    row = conn.execute(select(db.functions).where(db.functions.c.name == name)).first()
    if row is None:
        raise NotFound(f"no function named {name!r}")
    return row


def version_row(conn: Connection, name: str, number: int) -> Any:
    """The version's row; raises NotFound naming the function and number."""
    function_row(conn, name)
    row = conn.execute(
        select(db.versions).where(db.versions.c.function == name, db.versions.c.number == number)
    ).first()
    if row is None:
        raise NotFound(f"function {name!r} has no version {number}")
    return row


def _users(conn: Connection, name: str, number: int | None) -> list[str]:
    """Who still needs ``name`` (at ``number``, or any version): assignments and current or active deployments."""
    users: list[str] = []
    query = select(db.assignments).where(db.assignments.c.function == name)
    if number is not None:
        query = query.where(db.assignments.c.version == number)
    users += [f"the assignment on instance {r.instance_id} (version {r.version})" for r in conn.execute(query)]
    latest_ok: dict[str, int] = {}
    rows = conn.execute(select(db.deployments.c.instance_id, db.deployments.c.number, db.deployments.c.status,
                               db.deployments.c.versions)).all()  # fmt: skip
    for row in rows:
        if row.status == "succeeded":
            latest_ok[row.instance_id] = max(latest_ok.get(row.instance_id, 0), row.number)
    for row in rows:
        used = row.versions.get(name)
        if used is None or (number is not None and used != number):
            continue
        if row.status in ACTIVE or latest_ok.get(row.instance_id) == row.number:
            users.append(f"deployment {row.number} of instance {row.instance_id} ({row.status})")
    return users


class Catalog:
    """Create, list, get and delete functions and their code versions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Artifacts never change (their name is their hash): a fleet fetching one version is served from memory.
        self._artifacts: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._cached_bytes = 0

    async def create_function(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add a function (``name``, ``runtime``, ``handler``, ``initializer``). Raises ValidationError, Conflict."""
        spec = check_function(data)

        def work(conn: Connection) -> dict[str, Any]:
            if conn.execute(select(db.functions.c.name).where(db.functions.c.name == spec.name)).first():
                raise Conflict(f"a function named {spec.name!r} exists already")
            conn.execute(insert(db.functions).values(name=spec.name, runtime=spec.runtime, handler=spec.handler,
                                                     initializer=spec.initializer, created_at=now()))  # fmt: skip
            return _function(function_row(conn, spec.name))

        try:
            return await self.store.run(work)
        except IntegrityError:
            raise Conflict(f"a function named {spec.name!r} exists already") from None

    async def list_functions(self) -> list[dict[str, Any]]:
        """Every function, by name, with its latest version number."""

        def work(conn: Connection) -> list[dict[str, Any]]:
            latest = dict(conn.execute(select(db.versions.c.function, func.max(db.versions.c.number))
                                       .group_by(db.versions.c.function)).all())  # fmt: skip
            rows = conn.execute(select(db.functions).order_by(db.functions.c.name))
            return [{**_function(r), "latest_version": latest.get(r.name)} for r in rows]

        return await self.store.run(work)

    async def get_function(self, name: str) -> dict[str, Any]:
        """One function with its versions. Raises NotFound."""

        def work(conn: Connection) -> dict[str, Any]:
            out = _function(function_row(conn, name))
            rows = conn.execute(select(db.versions).where(db.versions.c.function == name).order_by(db.versions.c.number))
            out["versions"] = [_version(r) for r in rows]
            return out

        return await self.store.run(work)

    async def delete_function(self, name: str) -> None:
        """Delete a function and all its versions. Raises NotFound, or Conflict while anything still uses it."""

        def work(conn: Connection) -> None:
            function_row(conn, name)
            users = _users(conn, name, None)
            if users:
                raise Conflict(f"function {name!r} is still in use by " + "; ".join(users), details=users)
            shas = [r.sha256 for r in conn.execute(select(db.versions.c.sha256).where(db.versions.c.function == name))]
            conn.execute(delete(db.versions).where(db.versions.c.function == name))
            conn.execute(delete(db.functions).where(db.functions.c.name == name))
            _drop_unused_artifacts(conn, shas)

        await self.store.run(work)

    async def upload_version(self, name: str, data: bytes) -> dict[str, Any]:
        """Store ``data`` (a zip) as the next version of ``name``.

        Raises NotFound, or ValidationError when the zip fails the gateway's bundle checks or lacks the handler.
        """
        function = await self.store.run(function_row, name)
        spec = check_function({key: getattr(function, key) for key in FUNCTION_KEYS})
        await asyncio.to_thread(check_bundle, data, spec, label=f"{name}.zip")
        sha = hashlib.sha256(data).hexdigest()

        def work(conn: Connection) -> dict[str, Any]:
            function_row(conn, name)
            if conn.execute(select(db.artifacts.c.sha256).where(db.artifacts.c.sha256 == sha)).first() is None:
                conn.execute(insert(db.artifacts).values(sha256=sha, size=len(data), data=data))
            number = (conn.execute(select(func.max(db.versions.c.number)).where(db.versions.c.function == name))
                      .scalar() or 0) + 1  # fmt: skip
            conn.execute(insert(db.versions).values(function=name, number=number, sha256=sha, size=len(data),
                                                    created_at=now()))  # fmt: skip
            return _version(version_row(conn, name, number))

        for _ in range(5):  # two uploads at once may pick the same number; the loser takes the next one
            try:
                return await self.store.run(work)
            except IntegrityError:
                continue
        raise Conflict(f"could not number a new version of {name!r}: too many uploads at once; try again")

    async def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Versions of ``name``, oldest first. Raises NotFound."""
        return (await self.get_function(name))["versions"]  # type: ignore[no-any-return]

    async def get_version(self, name: str, number: int) -> dict[str, Any]:
        """One version. Raises NotFound."""
        return _version(await self.store.run(version_row, name, number))

    async def version_data(self, name: str, number: int) -> bytes:
        """The zip of a version. Raises NotFound."""

        def work(conn: Connection) -> bytes:
            row = version_row(conn, name, number)
            return artifact_data(conn, row.sha256)

        return await self.store.run(work)

    async def delete_version(self, name: str, number: int) -> None:
        """Delete a version. Raises NotFound, or Conflict while an assignment or deployment still uses it."""

        def work(conn: Connection) -> None:
            row = version_row(conn, name, number)
            users = _users(conn, name, number)
            if users:
                raise Conflict(f"version {number} of {name!r} is still in use by " + "; ".join(users), details=users)
            conn.execute(delete(db.versions).where(db.versions.c.function == name, db.versions.c.number == number))
            _drop_unused_artifacts(conn, [row.sha256])

        await self.store.run(work)

    async def artifact(self, sha: str) -> bytes:
        """An artifact's bytes by sha256. Raises NotFound."""
        data = self._artifacts.get(sha)
        if data is None:
            data = await self.store.run(artifact_data, sha)
            self._artifacts[sha] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > ARTIFACT_CACHE_BYTES and len(self._artifacts) > 1:
                self._cached_bytes -= len(self._artifacts.popitem(last=False)[1])
        else:
            self._artifacts.move_to_end(sha)
        return data


def artifact_data(conn: Connection, sha: str) -> bytes:
    """Raises NotFound when no artifact has this sha256."""
    row = conn.execute(select(db.artifacts.c.data).where(db.artifacts.c.sha256 == sha)).first()
    if row is None:
        raise NotFound(f"no artifact with sha256 {sha}")
    return bytes(row.data)


def _drop_unused_artifacts(conn: Connection, shas: list[str]) -> None:
    for sha in set(shas):
        if conn.execute(select(db.versions.c.sha256).where(db.versions.c.sha256 == sha)).first() is None:
            conn.execute(delete(db.artifacts).where(db.artifacts.c.sha256 == sha))


def check_version_number(text: str) -> int:
    """A version number from a path. Raises ValidationError."""
    if not text.isdigit() or int(text) < 1:
        raise ValidationError([f"version: must be a whole number from 1, got {text!r}"])
    return int(text)
