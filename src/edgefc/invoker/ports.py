"""Narrow interfaces the invoker offers to the triggers above it (the device service), so none reaches through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edgefc.config.manifest import Manifest

InstanceListener = Callable[[str, str, str], None]  # (function, instance id, "ready" | "exit")
CallHandler = Callable[[str, str, dict[str, Any]], Awaitable[Any]]  # (calling function, op, args) → value
Publish = Callable[[str, bytes, int, str, str], Awaitable[str]]  # (topic, payload, qos, source type, source id)


class CallbackTarget(Protocol):
    """A running instance that answers callbacks (a driver's get/set/service handlers)."""

    async def callback(self, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The reply frame. Raises TimeoutError, FunctionError."""


class DriverAccess(Protocol):
    """What the device service needs of the invoker."""

    def ready_instance(self, name: str) -> CallbackTarget:
        """A ready instance of function ``name``. Raises Unavailable saying the function's state."""

    def listen(self, listener: InstanceListener) -> None: ...

    def unlisten(self, listener: InstanceListener) -> None: ...

    def handle(self, prefix: str, handler: CallHandler) -> None: ...

    async def invoke(self, name: str, payload: bytes, *, trigger: dict[str, Any] | None = None,
                     request_id: str | None = None) -> bytes:  # fmt: skip
        """Run one event synchronously. Raises NotFound, Busy, Unavailable or FunctionError."""

    async def invoke_async(self, name: str, payload: bytes, trigger: dict[str, Any] | None = None) -> str:
        """Accept an event for later; its invocation id. Raises NotFound."""

    def unhandle(self, prefix: str, handler: CallHandler) -> None: ...


class DeploymentHooks(Protocol):
    """What the device service needs of the deployer: the applied manifest and a hook before each apply."""

    @property
    def manifest(self) -> Manifest | None: ...

    @property
    def before_apply(self) -> list[Callable[[Any], Callable[[], None]]]: ...

    @property
    def on_applied(self) -> list[Callable[[Any], Awaitable[None] | None]]: ...
