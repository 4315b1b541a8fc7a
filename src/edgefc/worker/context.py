"""The ``context`` object a handler receives (CONTRACT §1)."""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple


# NamedTuples rather than dataclasses: the fork server imports this module before every worker, and
# dataclasses (with inspect, ast and dis) would cost it ~2 MiB that no handler needs.
class FunctionInfo(NamedTuple):
    name: str
    handler: str
    memory: int  # MB
    timeout: float  # s
    version: str
    initializer: str | None = None


class TriggerInfo(NamedTuple):
    type: str  # invoke | timer | message
    topic: str | None = None
    source: str | None = None


class RequestLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``context.logger``: a logger whose records carry the request id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("request_id", self.extra["request_id"] if self.extra else None)
        kwargs["extra"] = extra
        return msg, kwargs


class Context:
    """What a handler knows about its event and itself."""

    def __init__(self, request_id: str, function: FunctionInfo, trigger: TriggerInfo, deadline: float,
                 invoker_context: Any = None) -> None:  # fmt: skip
        self.request_id = request_id
        self.function = function
        self.trigger = trigger
        # What the caller passed as Link IoT Edge's ``invokerContext`` (lecoresdk ``Client.invoke_function``),
        # decoded from its base64 JSON; None when the event did not come from such a call.
        self.invoker_context = invoker_context
        self._deadline = deadline  # time.monotonic() value
        self.logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = RequestLoggerAdapter(
            logging.getLogger(function.name), {"request_id": request_id}
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function={self.function.name!r})"
