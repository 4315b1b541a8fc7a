"""Alembic migrations of the cloud schema; :func:`edgefc.cloud.migrate.upgrade` runs them at start."""
