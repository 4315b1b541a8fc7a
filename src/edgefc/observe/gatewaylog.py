"""The gateway's own log records, kept in the log store beside the functions' lines (function ``_gateway``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from edgefc.observe.entry import GATEWAY_FUNCTION, Level, LogEntry, Stream

if TYPE_CHECKING:
    from edgefc.observe.logs import LogStore

_FORMATTER = logging.Formatter()


class GatewayLogHandler(logging.Handler):
    """Puts the gateway's own log records into the store as function ``_gateway``, stream ``gateway``."""

    def __init__(self, store: LogStore, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.store = store

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + _FORMATTER.formatException(record.exc_info).rstrip()
            entry = LogEntry(
                time=record.created,
                function=GATEWAY_FUNCTION,
                instance=record.name,
                request_id=str(getattr(record, "request_id", "") or ""),
                level=Level.coerce(record.levelno).label,
                stream=Stream.GATEWAY.value,
                message=message,
            )
            loop = self.store.loop
            if loop is None or _running_loop() is loop:
                self.store.append(entry)
            elif not loop.is_closed():
                # Records from other threads (the writer, executors) must reach the store on its loop.
                loop.call_soon_threadsafe(self.store.append, entry)
        except Exception:
            self.handleError(record)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
