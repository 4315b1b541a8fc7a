"""Driver side of devices: ``fc.driver`` (CONTRACT §1).

A driver is a continuous function. It reads the devices the manifest assigns to it, registers each with a
:class:`ThingClient`, reports what the devices measure, and answers the gateway's get/set/service requests
through the callbacks it gave::

    import threading, time
    import edgefc.sdk as fc

    def init(context):
        for dev in fc.driver.devices():
            client = fc.driver.ThingClient(dev.product_key, dev.device_name, on_get=..., on_set=...)
            client.register_and_online()
            threading.Thread(target=poll, args=(client, dev.config), daemon=True).start()

A callback answers with a dict (or None for ``{}``) and refuses with ``raise fc.driver.DeviceError(code,
message)``; the caller gets that code and message back. Each callback runs on its own thread and must answer
within the caller's timeout (5 s by default); one that raises or hangs gives the caller an error while the
driver keeps running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

from edgefc.devices import codes
from edgefc.sdk.things import DeviceError, NotFound, ThingError, gateway_call
from edgefc.worker.main import current

__all__ = ["DeviceError", "DeviceInfo", "NotFound", "ThingClient", "ThingError", "config", "devices"]

GetCallback = Callable[[list[str]], "dict[str, Any] | None"]
SetCallback = Callable[[dict[str, Any]], "dict[str, Any] | None"]
ServiceCallback = Callable[[str, dict[str, Any]], "dict[str, Any] | None"]

_CALLBACK_OPS = ("device.get", "device.set", "device.service")


@dataclass(frozen=True)
class DeviceInfo:
    """A device assigned to this driver by the manifest (also readable as ``info["product_key"]``)."""

    product_key: str
    device_name: str
    config: Any
    tags: dict[str, str]

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def config() -> Any:
    """The driver's own ``config`` from the manifest (the same as ``fc.config()``)."""
    return current().config


def devices() -> list[DeviceInfo]:
    """The devices the applied deployment assigns to this driver. Raises ThingError."""
    found = gateway_call("device.list", {})
    return [DeviceInfo(d["product_key"], d["device_name"], d.get("config"), dict(d.get("tags") or {})) for d in found]


_clients: dict[tuple[str, str], ThingClient] = {}
_clients_lock = threading.Lock()


def _serve(op: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def serve(args: dict[str, Any]) -> dict[str, Any]:
        client = _clients.get((str(args.get("product_key")), str(args.get("device_name"))))
        if client is None:
            return {"code": codes.DEVICE_UNREGISTERED,
                    "message": f"this driver instance has no client for /{args.get('product_key')}/{args.get('device_name')}"}  # fmt: skip
        return client._answer(op, args)

    return serve


def _install_callbacks() -> None:
    callbacks = current().callbacks
    for op in _CALLBACK_OPS:
        callbacks.setdefault(op, _serve(op))


class ThingClient:
    """One device as its driver sees it: register it, report for it, answer requests for it.

    ``on_get(keys) -> dict``, ``on_set(properties) -> dict | None``, ``on_service(name, args) -> dict | None``;
    a missing callback refuses that kind of request (codes 109002, 109003, 109005).
    """

    def __init__(self, product_key: str, device_name: str, *, on_get: GetCallback | None = None,
                 on_set: SetCallback | None = None, on_service: ServiceCallback | None = None) -> None:  # fmt: skip
        self.product_key = product_key
        self.device_name = device_name
        self.on_get = on_get
        self.on_set = on_set
        self.on_service = on_service

    def __repr__(self) -> str:
        return f"ThingClient({self.product_key!r}, {self.device_name!r})"

    def _args(self, **more: Any) -> dict[str, Any]:
        return {"product_key": self.product_key, "device_name": self.device_name, **more}

    def register_and_online(self) -> None:
        """Register the device with the gateway and mark it online; from now on its callbacks are served.

        Raises NotFound when the manifest does not assign this device to this driver.
        """
        _install_callbacks()
        with _clients_lock:
            _clients[(self.product_key, self.device_name)] = self
        try:
            gateway_call("device.register", self._args())
        except ThingError:
            with _clients_lock:
                if _clients.get((self.product_key, self.device_name)) is self:
                    del _clients[(self.product_key, self.device_name)]
            raise

    def online(self) -> None:
        """Mark the (registered) device online again. Raises DeviceError (109000) when not registered."""
        gateway_call("device.online", self._args())

    def offline(self) -> None:
        """Mark the device offline: reports are refused and callers get Unavailable until :meth:`online`."""
        gateway_call("device.offline", self._args())

    def report_properties(self, properties: dict[str, Any]) -> None:
        """Report property values; they are stored as the device's last properties and routed on
        ``/sys/{pk}/{dn}/thing/event/property/post``. Raises DeviceError when not registered (109000) or offline (109001).
        """
        gateway_call("device.report_properties", self._args(properties=dict(properties)))

    def report_event(self, name: str, params: dict[str, Any] | None = None) -> None:
        """Report an event, routed on ``/sys/{pk}/{dn}/thing/event/{name}/post``. Raises DeviceError like reports."""
        gateway_call("device.report_event", self._args(name=name, params=dict(params or {})))

    def unregister(self) -> None:
        """Remove the device from the gateway's online devices; its callbacks are no longer served."""
        try:
            gateway_call("device.unregister", self._args())
        finally:
            with _clients_lock:
                if _clients.get((self.product_key, self.device_name)) is self:
                    del _clients[(self.product_key, self.device_name)]

    def thing_model(self, kind: str = "tsl") -> str | None:
        """The device's thing model text (``tsl`` or ``tsl_ext_info`` from its config), None without one."""
        return gateway_call("device.tsl", self._args(kind=kind))  # type: ignore[no-any-return]

    # ---- serving the gateway's requests (on a worker callback thread) ------------------------------------------

    def _answer(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run the callback for ``op`` on its own thread, so that one which hangs holds no worker thread.

        Returns ``{"code": 0, "value": dict}`` or ``{"code", "message"}``; re-raises what the callback raised.
        """
        call: Callable[[], Any]
        if op == "device.get":
            get, keys = self.on_get, [str(k) for k in args.get("keys") or []]
            if get is None:
                return {"code": codes.PROPERTY_NOT_EXIST, "message": f"{self!r} offers no properties to get"}
            call = lambda: get(keys)  # noqa: E731
        elif op == "device.set":
            put, props = self.on_set, dict(args.get("properties") or {})
            if put is None:
                return {"code": codes.PROPERTY_READ_ONLY, "message": f"{self!r} has no settable properties"}
            call = lambda: put(props)  # noqa: E731
        else:
            service, name, service_args = self.on_service, str(args.get("name")), dict(args.get("args") or {})
            if service is None:
                return {"code": codes.SERVICE_NOT_EXIST, "message": f"{self!r} has no service {name!r}"}
            call = lambda: service(name, service_args)  # noqa: E731
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(call())
            except BaseException as exc:  # noqa: BLE001 — handed back to the waiting thread
                done.set_exception(exc)

        threading.Thread(target=run, name=f"edgefc-{op}", daemon=True).start()
        # The gateway's deadline is the one that counts (it started first); giving up just after it frees this
        # worker thread, so that hung callbacks never starve the others.
        if not wait([done], float(args.get("timeout") or 5.0) + 0.1).done:
            return {"code": codes.TIMEOUT, "message": f"{self!r}: the callback did not answer in time"}
        try:
            value = done.result()
        except DeviceError as exc:
            return {"code": exc.code or codes.UNKNOWN, "message": exc.message}
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TypeError(f"the {op.partition('.')[2]} callback of {self!r} returned {type(value).__name__}, not a dict")
        return {"code": codes.SUCCESS, "value": value}
