"""The invoker: the one way to a function — the API, router, timers, the SDK and devices all call through it.

- :class:`~edgefc.invoker.invoker.Invoker` runs events (sync and durable async), serves the SDK calls of
  function code and hands drivers' instances to the device service.
- :class:`~edgefc.invoker.events.EventSink` takes what function managers report (metrics, perf, logs,
  instance events) and fans it out.
"""

from edgefc.invoker.events import EventSink
from edgefc.invoker.invoker import FunctionTable, Invoker

__all__ = ["EventSink", "FunctionTable", "Invoker"]
