"""The cloud's schema (SQLAlchemy Core) and engine: SQLite by default, PostgreSQL by URL, the same code.

Code artifacts live in the database (``artifacts.data``) so that every replica reaches them without a shared
directory. Times are epoch seconds of the cloud's own clock; a gateway's clock is never trusted for ordering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

metadata = MetaData()

functions = Table(
    "functions", metadata,
    Column("name", String(64), primary_key=True),
    Column("runtime", String(32), nullable=False),
    Column("handler", String(256), nullable=False),
    Column("initializer", String(256), nullable=True),
    Column("created_at", Float, nullable=False),
)  # fmt: skip

artifacts = Table(
    "artifacts", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)  # fmt: skip

versions = Table(
    "versions", metadata,
    Column("function", String(64), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("sha256", String(64), ForeignKey("artifacts.sha256"), nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)  # fmt: skip

instances = Table(
    "instances", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("token_rotated_at", Float, nullable=False),
    Column("routes", JSON, nullable=False),
    Column("devices", JSON, nullable=False),
    Column("last_seen", Float, nullable=True),
    Column("status", JSON, nullable=True),
    Column("status_at", Float, nullable=True),
    Column("clock_skew_s", Float, nullable=True),
)  # fmt: skip

assignments = Table(
    "assignments", metadata,
    Column("instance_id", String(32), ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    Column("function", String(64), ForeignKey("functions.name"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("settings", JSON, nullable=False),
)  # fmt: skip

deployments = Table(
    "deployments", metadata,
    Column("instance_id", String(32), ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("traceback", Text, nullable=True),
    Column("manifest", JSON, nullable=False),
    Column("artifacts", JSON, nullable=False),  # function → sha256
    Column("versions", JSON, nullable=False),  # function → version number
    Column("stages", JSON, nullable=False),  # [{"stage", "at", "message"}]
    Column("rollback_of", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)  # fmt: skip

requests = Table(
    "requests", metadata,
    Column("id", String(32), primary_key=True),
    Column("instance_id", String(32), ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("answer", JSON, nullable=True),
)  # fmt: skip

def database_url(db: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL: ``db`` as given (``postgresql://`` means psycopg 3), else SQLite in the data dir."""
    if not db:
        return f"sqlite:///{(data_dir / 'cloud.db').resolve()}"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys, so threads share it safely."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=16, max_overflow=8, pool_pre_ping=True)
