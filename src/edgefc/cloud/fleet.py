"""Edge instances (one per gateway): tokens, assignments of function versions, routes and devices."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from edgefc.cloud import db
from edgefc.cloud.catalog import function_row, version_row
from edgefc.cloud.notify import ANY
from edgefc.cloud.store import Store, iso, now
from edgefc.cloud.validate import check_list, check_settings, function_entry
from edgefc.errors import NotFound, Unauthorized, ValidationError

ONLINE_WINDOW_S = 40.0  # a gateway polls at least every ~25 s; silent longer than this, it is offline
_NAME_MAX = 128


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The hot statements are built once: building a select costs more than running it from the compiled cache.
_INSTANCE = select(db.instances).where(db.instances.c.id == bindparam("b_id"))
_a, _f, _v = db.assignments, db.functions, db.versions
_ASSIGNED = (select(_a, _f.c.runtime, _f.c.handler, _f.c.initializer, _v.c.sha256)
             .join(_f, _f.c.name == _a.c.function)
             .outerjoin(_v, and_(_v.c.function == _a.c.function, _v.c.number == _a.c.version))
             .where(_a.c.instance_id == bindparam("b_id")).order_by(_a.c.function))  # fmt: skip


def instance_row(conn: Connection, instance_id: str) -> Any:
    """The instance's row; raises NotFound."""
    row = conn.execute(_INSTANCE, {"b_id": instance_id}).first()
    if row is None:
        raise NotFound(f"no instance with id {instance_id!r}")
    return row


def online(row: Any, at: float) -> bool:
    return row.last_seen is not None and at - row.last_seen <= ONLINE_WINDOW_S


def instance_view(row: Any, at: float) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "created_at": iso(row.created_at),
            "token_rotated_at": iso(row.token_rotated_at), "online": online(row, at),
            "last_seen": iso(row.last_seen)}  # fmt: skip


def assigned_entries(conn: Connection, instance_id: str) -> list[tuple[Any, dict[str, Any]]]:
    """(assignment row, manifest entry) of every function assigned to the instance, by name, in one query.

    Each row also carries ``sha256``, the code of its assigned version (None if that version is gone).
    """
    rows = conn.execute(_ASSIGNED, {"b_id": instance_id}).all()
    function = ("runtime", "handler", "initializer")
    return [(row, function_entry({"name": row.function, **{k: getattr(row, k) for k in function}}, row.settings))
            for row in rows]  # fmt: skip


class Fleet:
    """Create, list, get, delete instances; rotate tokens; set assignments, routes and devices."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # instance id → sha256 of its token, as last read. A fleet's every request would otherwise cost a
        # query; a rotation or deletion is announced to every replica with its commit and drops the entry.
        self._tokens: dict[str, str] = {}
        self._forgotten = 0  # a read that raced with a rotation must not put the old token back
        store.notifier.listeners.append(self._forget)

    def _forget(self, topic: str) -> None:
        if topic == ANY or topic.startswith("token:"):
            self._forgotten += 1
        if topic == ANY:
            self._tokens.clear()
        elif topic.startswith("token:"):
            self._tokens.pop(topic[len("token:"):], None)

    async def create_instance(self, data: dict[str, Any]) -> dict[str, Any]:
        """A new instance ``{"name"}`` → its view plus ``token`` (shown this once). Raises ValidationError."""
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > _NAME_MAX:
            raise ValidationError([f"name: must be a non-empty string of at most {_NAME_MAX} characters"])
        extra = sorted(set(data) - {"name"})
        if extra:
            raise ValidationError([f"{key}: unknown key (an instance has only a name)" for key in extra])
        instance_id = "gw-" + secrets.token_hex(6)
        token = secrets.token_urlsafe(32)

        def work(conn: Connection) -> dict[str, Any]:
            at = now()
            conn.execute(insert(db.instances).values(id=instance_id, name=name, token_sha256=token_hash(token),
                                                     created_at=at, token_rotated_at=at, routes=[], devices=[]))  # fmt: skip
            return {**instance_view(instance_row(conn, instance_id), at), "token": token}

        return await self.store.run(work)

    async def list_instances(self) -> list[dict[str, Any]]:
        """Every instance with whether it is online."""

        def work(conn: Connection) -> list[dict[str, Any]]:
            at = now()
            return [instance_view(r, at) for r in conn.execute(select(db.instances).order_by(db.instances.c.created_at))]

        return await self.store.run(work)

    async def get_instance(self, instance_id: str) -> dict[str, Any]:
        """One instance with its assignments, routes and devices. Raises NotFound."""

        def work(conn: Connection) -> dict[str, Any]:
            row = instance_row(conn, instance_id)
            out = instance_view(row, now())
            out["assignments"] = [{"function": a.function, "version": a.version, **a.settings}
                                  for a, _ in assigned_entries(conn, instance_id)]  # fmt: skip
            out["routes"], out["devices"] = row.routes, row.devices
            return out

        return await self.store.run(work)

    async def delete_instance(self, instance_id: str) -> None:
        """Delete an instance with its assignments and history; its token stops working. Raises NotFound."""

        def work(conn: Connection) -> None:
            instance_row(conn, instance_id)
            for table in (db.requests, db.deployments, db.assignments):
                conn.execute(delete(table).where(table.c.instance_id == instance_id))
            conn.execute(delete(db.instances).where(db.instances.c.id == instance_id))

        await self.store.run(work, notify=(f"token:{instance_id}",))

    async def rotate_token(self, instance_id: str) -> dict[str, Any]:
        """A new token for the instance (shown once); the old one is refused from now on. Raises NotFound."""
        token = secrets.token_urlsafe(32)

        def work(conn: Connection) -> dict[str, Any]:
            instance_row(conn, instance_id)
            conn.execute(update(db.instances).where(db.instances.c.id == instance_id)
                         .values(token_sha256=token_hash(token), token_rotated_at=now()))  # fmt: skip
            return {**instance_view(instance_row(conn, instance_id), now()), "token": token}

        return await self.store.run(work, notify=(f"token:{instance_id}",))

    async def authenticate(self, instance_id: str, token: str) -> None:
        """Check a gateway's credentials (the long poll and reports mark it seen). Raises Unauthorized saying
        which part is wrong."""
        known = self._tokens.get(instance_id)
        if known is None:
            before = self._forgotten
            row = await self.store.run(lambda conn: conn.execute(
                select(db.instances.c.token_sha256).where(db.instances.c.id == instance_id)).first())  # fmt: skip
            if row is None:
                raise Unauthorized(f"no instance with id {instance_id!r} (check cloud.gateway_id)")
            known = row.token_sha256
            if self._forgotten == before:
                self._tokens[instance_id] = known
        if not hmac.compare_digest(known, token_hash(token)):
            raise Unauthorized(f"the token of instance {instance_id} is wrong or was rotated "
                               "(put the current one in cloud.token_file)")  # fmt: skip

    async def put_assignment(self, instance_id: str, function: str, data: dict[str, Any]) -> dict[str, Any]:
        """Assign ``version`` of ``function`` with every setting of the manifest entry.

        Raises NotFound (instance, function, version) or ValidationError naming the field as the gateway would.
        """
        settings = dict(data)
        version = settings.pop("version", None)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError([f"version: must be a version number of {function!r} (1, 2, …), got {version!r}"])

        def work(conn: Connection) -> dict[str, Any]:
            instance_row(conn, instance_id)
            fn = function_row(conn, function)
            version_row(conn, function, version)
            clean = check_settings(fn._asdict(), settings)
            conn.execute(delete(db.assignments).where(db.assignments.c.instance_id == instance_id,
                                                      db.assignments.c.function == function))  # fmt: skip
            conn.execute(insert(db.assignments).values(instance_id=instance_id, function=function, version=version,
                                                       settings=clean))  # fmt: skip
            return {"function": function, "version": version, **clean}

        return await self.store.run(work)

    async def delete_assignment(self, instance_id: str, function: str) -> None:
        """Unassign ``function`` (the next deployment removes it from the gateway). Raises NotFound."""

        def work(conn: Connection) -> None:
            instance_row(conn, instance_id)
            done = conn.execute(delete(db.assignments).where(db.assignments.c.instance_id == instance_id,
                                                             db.assignments.c.function == function))  # fmt: skip
            if done.rowcount == 0:
                raise NotFound(f"function {function!r} is not assigned to instance {instance_id}")

        await self.store.run(work)

    async def set_list(self, instance_id: str, key: str, items: Any) -> list[dict[str, Any]]:
        """Replace the instance's ``routes`` or ``devices``, checked against its assigned functions.

        Raises NotFound or ValidationError (``routes[0].target: …``).
        """
        assert key in ("routes", "devices")

        def work(conn: Connection) -> list[dict[str, Any]]:
            instance_row(conn, instance_id)
            clean = check_list(key, items, [entry for _, entry in assigned_entries(conn, instance_id)])
            conn.execute(update(db.instances).where(db.instances.c.id == instance_id).values({key: clean}))
            return clean

        return await self.store.run(work)
