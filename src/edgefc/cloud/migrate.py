"""Schema migrations at start: Alembic's ``upgrade head`` on the cloud's database, one replica at a time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

_SCRIPTS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x65646766  # "edgf": replicas starting together take turns on PostgreSQL


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; blocking. Raises SQLAlchemy errors when the database is unreachable."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
        finally:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                connection.commit()
