"""The subscription table of one MQTT link: filters with their MQTT v5 subscription identifiers, and which of
a broker's copies of one publication to keep.

A broker sends one copy of a publication per matching subscription of a client. Each filter gets its own
subscription identifier; a copy is kept only when it carries the lowest identifier among our filters that
match its topic, so overlapping filters (``a/+`` and ``+/b`` for ``a/b``) still deliver the message once.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgefc.router.topics import TopicFilter

_CACHE_LIMIT = 4096


class Subscriptions:
    """Filters → identifiers, the SUBACKs still awaited, and the duplicate check; no I/O of its own."""

    def __init__(self) -> None:
        self.ids: dict[TopicFilter, int] = {}  # filter → subscription identifier
        self.unacked: set[int] = set()  # SUBSCRIBE packet ids still waiting for their SUBACK
        self._lowest: dict[str, int | None] = {}  # topic → lowest identifier of our filters matching it
        self._next_id = 1

    def replace(self, filters: Iterable[str | TopicFilter]) -> tuple[dict[TopicFilter, int], list[TopicFilter]]:
        """Make ``filters`` the table; returns (added filters with their new identifiers, removed filters).

        Raises ValueError for a filter that is not valid (nothing changes then).
        """
        wanted = {f if isinstance(f, TopicFilter) else TopicFilter.parse(f) for f in filters}
        removed = [f for f in self.ids if f not in wanted]
        added = {}
        for topic_filter in sorted(wanted - self.ids.keys(), key=str):
            added[topic_filter] = self._next_id
            self._next_id += 1
        for topic_filter in removed:
            del self.ids[topic_filter]
        self.ids.update(added)
        self._lowest.clear()
        return added, removed

    def is_duplicate(self, topic: str, carried: Iterable[int] | None) -> bool:
        """Whether a copy on ``topic`` carrying subscription identifiers ``carried`` is one to drop."""
        if not carried:
            return False
        if topic in self._lowest:
            lowest = self._lowest[topic]
        else:
            ours = [sid for f, sid in self.ids.items() if f.matches(topic)]
            lowest = min(ours) if ours else None
            if len(self._lowest) >= _CACHE_LIMIT:
                self._lowest.clear()  # topic sets are small in practice; a reset keeps this bounded
            self._lowest[topic] = lowest
        return lowest is not None and lowest not in carried
