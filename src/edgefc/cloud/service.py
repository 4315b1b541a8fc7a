"""The cloud's operations, each defined once: the ``/v1`` routes, the agent routes and the console call these.

``CloudService(engine)`` gathers ``catalog`` (functions, versions), ``fleet`` (instances, tokens, assignments,
routes, devices), ``deployments`` and ``gateways`` (long poll, status, live log queries, event streams).
Every method is async and does its database work in a thread.
"""

from __future__ import annotations

from sqlalchemy import Engine

from edgefc.cloud.catalog import Catalog
from edgefc.cloud.deployments import Deployments
from edgefc.cloud.fleet import Fleet
from edgefc.cloud.gateways import Gateways
from edgefc.cloud.notify import Notifier
from edgefc.cloud.store import Store


class CloudService:
    """Every cloud operation over one database; ``notifier.run()`` must run while it serves (see server.py)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.notifier = Notifier(engine)
        self.store = Store(engine, self.notifier)
        self.catalog = Catalog(self.store)
        self.fleet = Fleet(self.store)
        self.deployments = Deployments(self.store)
        self.gateways = Gateways(self.store, self.notifier, self.deployments)
