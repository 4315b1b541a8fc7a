"""The device service: drivers' requests (register, report…), applications' thing operations, and the API's.

A driver is a continuous function; it registers the devices the manifest assigns to it and reports for them.
Reports become router messages on the Link IoT Edge topics with source ``device:/{pk}/{dn}``. An application's
get/set/service request goes to the driver instance as a ``callback`` frame and is answered by the driver's
callback for that device, within a timeout. When a driver has no running instance left, its devices are
unregistered (shown offline) until a new instance registers them again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from edgefc.devices import codes
from edgefc.devices.registry import Device, DeviceState, Registry, device_path
from edgefc.errors import DeviceError, FunctionError, Unavailable, ValidationError
from edgefc.invoker.ports import CallbackTarget, DeploymentHooks, DriverAccess, Publish
from edgefc.router.topics import validate_topic

log = logging.getLogger("edgefc.devices")

DEFAULT_CALLBACK_TIMEOUT_S = 5.0
MAX_CALLBACK_TIMEOUT_S = 300.0

Op = Callable[[str, dict[str, Any]], Awaitable[Any]]


def property_topic(product_key: str, device_name: str) -> str:
    return f"/sys/{product_key}/{device_name}/thing/event/property/post"


def event_topic(product_key: str, device_name: str, event: str) -> str:
    return f"/sys/{product_key}/{device_name}/thing/event/{event}/post"


def _text(args: dict[str, Any], key: str, what: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationError([f"{key}: {what} must be a non-empty string, got {value!r}"])
    return value


def _mapping(args: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    value = args.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationError([f"{key}: must be an object with string keys, got {type(value).__name__}"])
    return value


def _keys(args: dict[str, Any]) -> list[str]:
    value = args.get("keys")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(k, str) for k in value):
        raise ValidationError([f"keys: must be a list of property names, got {value!r}"])
    return list(value)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


class DeviceService:
    """Serves ``device.*`` (drivers) and ``thing.*`` (applications) SDK calls and the devices API."""

    def __init__(self, *, functions: DriverAccess, deployments: DeploymentHooks, publish: Publish,
                 callback_timeout_s: float = DEFAULT_CALLBACK_TIMEOUT_S) -> None:  # fmt: skip
        self.functions = functions
        self.deployments = deployments
        self.publish = publish
        self.registry = Registry()
        self.callback_timeout_s = callback_timeout_s
        self._alive: dict[str, set[str]] = {}  # function → its instances that became ready and have not ended
        self._driver_ops: dict[str, Op] = {
            "list": self._list_mine, "register": self._register, "online": self._online, "offline": self._offline,
            "unregister": self._unregister, "report_properties": self._report_properties,
            "report_event": self._report_event, "tsl": self._tsl,
        }  # fmt: skip
        self._app_ops: dict[str, Op] = {
            "get_properties": self._app_get, "set_properties": self._app_set,
            "call_service": self._app_service, "find": self._app_find,
        }  # fmt: skip
        if deployments.manifest is not None:
            self.registry.apply(deployments.manifest.devices)
        # A driver reads its device list and registers while its instance starts, i.e. inside Deployer.apply and
        # before on_applied runs; so the registry takes the new device list just before the apply (and goes back
        # when it fails). A driver whose devices change is a changed function: the deployer replaces it.
        deployments.before_apply.append(self._before_apply)
        functions.handle("device", self._driver_call)
        functions.handle("thing", self._app_call)
        functions.listen(self._instance_event)

    def close(self) -> None:
        """Detach from the gateway (idempotent)."""
        if self._before_apply in self.deployments.before_apply:
            self.deployments.before_apply.remove(self._before_apply)
        self.functions.unhandle("device", self._driver_call)
        self.functions.unhandle("thing", self._app_call)
        self.functions.unlisten(self._instance_event)

    def _before_apply(self, prepared: Any) -> Callable[[], None]:
        previous = self.registry.apply(prepared.manifest.devices)
        return lambda: self.registry.restore(previous)

    # ---- instances ---------------------------------------------------------------------------------------------

    def _instance_event(self, function: str, instance_id: str, event: str) -> None:
        alive = self._alive.setdefault(function, set())
        if event == "ready":
            alive.add(instance_id)
            return
        if event != "exit":
            return
        alive.discard(instance_id)
        if alive:
            return  # e.g. the old instance of a redeployed driver: the new one already took over
        del self._alive[function]
        gone = self.registry.driver_gone(function)
        if gone:
            log.warning("driver %s has no running instance: %d device(s) offline (%s)", function, len(gone),
                        ", ".join(d.path for d in gone[:5]) + (" …" if len(gone) > 5 else ""))  # fmt: skip

    def _runner(self, driver: str) -> CallbackTarget:
        """A ready instance of ``driver``; raises Unavailable."""
        return self.functions.ready_instance(driver)

    # ---- SDK entry points ----------------------------------------------------------------------------------------

    async def _driver_call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        handler = self._driver_ops.get(op.partition(".")[2])
        if handler is None:
            raise ValidationError([f"sdk: unknown device operation {op!r}"])
        return await handler(function, args)

    async def _app_call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        handler = self._app_ops.get(op.partition(".")[2])
        if handler is None:
            raise ValidationError([f"sdk: unknown thing operation {op!r}"])
        return await handler(function, args)

    # ---- drivers ---------------------------------------------------------------------------------------------------

    def _own(self, driver: str, args: dict[str, Any]) -> Device:
        pk = _text(args, "product_key", "the product key")
        dn = _text(args, "device_name", "the device name")
        return self.registry.owned(driver, pk, dn)

    async def _list_mine(self, driver: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"product_key": d.spec.product_key, "device_name": d.spec.device_name, "config": d.spec.config,
             "tags": dict(d.spec.tags)}
            for d in self.registry.of_driver(driver)
        ]  # fmt: skip

    async def _register(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        if device.state is not DeviceState.ONLINE:
            log.info("device %s online (registered by %s)", device.path, driver)
        device.state = DeviceState.ONLINE
        device.registered_at = device.seen()

    async def _online(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        if device.state is DeviceState.UNREGISTERED:
            raise DeviceError(codes.DEVICE_UNREGISTERED, f"device {device.path} is not registered: call register_and_online()")
        device.state = DeviceState.ONLINE
        device.seen()

    async def _offline(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        if device.state is DeviceState.UNREGISTERED:
            raise DeviceError(codes.DEVICE_UNREGISTERED, f"device {device.path} is not registered: call register_and_online()")
        if device.state is DeviceState.ONLINE:
            log.info("device %s offline (its driver %s said so)", device.path, driver)
        device.state = DeviceState.OFFLINE

    async def _unregister(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        device.state = DeviceState.UNREGISTERED

    async def _report_properties(self, driver: str, args: dict[str, Any]) -> None:
        pk = _text(args, "product_key", "the product key")
        dn = _text(args, "device_name", "the device name")
        properties = _mapping(args, "properties")
        if not properties:
            raise ValidationError(["properties: report at least one property"])
        device = self.registry.registered(driver, pk, dn)
        at = device.seen()
        entries = {name: {"value": value, "time": at} for name, value in properties.items()}
        device.properties.update(entries)
        await self._publish(device, property_topic(pk, dn), entries)

    async def _report_event(self, driver: str, args: dict[str, Any]) -> None:
        pk = _text(args, "product_key", "the product key")
        dn = _text(args, "device_name", "the device name")
        name = _text(args, "name", "the event name")
        params = _mapping(args, "params", required=False)
        topic = event_topic(pk, dn, name)
        if "/" in name or validate_topic(topic):
            raise ValidationError([f"name: {name!r} cannot be a topic level (no '/', '+', '#')"])
        device = self.registry.registered(driver, pk, dn)
        await self._publish(device, topic, {"params": {"value": params, "time": device.seen()}})

    async def _publish(self, device: Device, topic: str, payload: Any) -> None:
        await self.publish(topic, _json(payload), 0, "device", device.path)

    async def _tsl(self, driver: str, args: dict[str, Any]) -> str:
        """The device's thing model text from its config (``tsl``/``tsl_ext_info``); an empty model without."""
        device = self._own(driver, args)
        kind = args.get("kind", "tsl")
        config = device.spec.config if isinstance(device.spec.config, dict) else {}
        if kind == "tsl_ext_info":
            found = config.get("tsl_ext_info", config.get("tslExtInfo"))
            return found if isinstance(found, str) else _json(found or {}).decode()
        found = config.get("tsl")
        if isinstance(found, str):
            return found
        if found is None:
            found = {"profile": {"productKey": device.spec.product_key}, "properties": [], "events": [], "services": []}
        return _json(found).decode()

    # ---- applications ------------------------------------------------------------------------------------------

    def _target(self, args: dict[str, Any]) -> Device:
        pk = _text(args, "product_key", "the product key")
        dn = _text(args, "device_name", "the device name")
        return self.registry.get(pk, dn)

    async def _app_get(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        device = self._target(args)
        return await self.get_properties(device.spec.product_key, device.spec.device_name, _keys(args), args.get("timeout"))

    async def _app_set(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        device = self._target(args)
        return await self.set_properties(
            device.spec.product_key, device.spec.device_name, _mapping(args, "properties"), args.get("timeout")
        )

    async def _app_service(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        device = self._target(args)
        name = _text(args, "name", "the service name")
        return await self.call_service(
            device.spec.product_key, device.spec.device_name, name, _mapping(args, "args", required=False), args.get("timeout")
        )

    async def _app_find(self, function: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        tags = _mapping(args, "tags", required=False)
        return self.find({k: str(v) for k, v in tags.items()})

    # ---- the operations (SDK and HTTP API) ---------------------------------------------------------------------

    def list_all(self) -> list[dict[str, Any]]:
        """Every device of the applied deployment."""
        return [d.to_dict() for d in self.registry.all()]

    def show(self, product_key: str, device_name: str) -> dict[str, Any]:
        """One device; raises NotFound."""
        return self.registry.get(product_key, device_name).to_dict()

    def find(self, tags: dict[str, str]) -> list[dict[str, Any]]:
        """Devices carrying every given tag."""
        return [d.to_dict() for d in self.registry.find(tags)]

    async def get_properties(self, product_key: str, device_name: str, keys: list[str],
                             timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Ask the driver for current property values. Raises NotFound, Unavailable, FunctionError, DeviceError."""
        device = self.registry.get(product_key, device_name)
        return await self._ask(device, "device.get", {"keys": list(keys)}, timeout)

    async def set_properties(self, product_key: str, device_name: str, properties: dict[str, Any],
                             timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Have the driver set properties. Raises NotFound, ValidationError, Unavailable, FunctionError, DeviceError."""
        device = self.registry.get(product_key, device_name)
        if not properties:
            raise ValidationError(["properties: give at least one property to set"])
        return await self._ask(device, "device.set", {"properties": dict(properties)}, timeout)

    async def call_service(self, product_key: str, device_name: str, name: str, args: dict[str, Any],
                           timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Have the driver run a service. Raises NotFound, Unavailable, FunctionError, DeviceError."""
        device = self.registry.get(product_key, device_name)
        return await self._ask(device, "device.service", {"name": name, "args": dict(args)}, timeout)

    def _timeout(self, timeout: Any) -> float:
        if timeout is None:
            return self.callback_timeout_s
        try:
            value = float(timeout)
        except (TypeError, ValueError):
            raise ValidationError([f"timeout: must be a number of seconds, got {timeout!r}"]) from None
        if not (0 < value <= MAX_CALLBACK_TIMEOUT_S) or math.isnan(value):
            raise ValidationError([f"timeout: must be in (0, {MAX_CALLBACK_TIMEOUT_S:g}] seconds, got {timeout!r}"])
        return value

    async def _ask(self, device: Device, op: str, args: dict[str, Any], timeout: Any) -> dict[str, Any]:
        """Run a driver callback for ``device`` and return its answer dict."""
        seconds = self._timeout(timeout)
        driver = device.spec.driver
        runner = self._runner(driver)
        if device.state is not DeviceState.ONLINE:
            how = "not registered by" if device.state is DeviceState.UNREGISTERED else "offline, says"
            raise Unavailable(f"device {device.path} is {how} its driver {driver!r}")
        what = {"device.get": "get properties", "device.set": "set properties", "device.service": f"service {args.get('name')!r}"}[op]
        frame = {**args, "product_key": device.spec.product_key, "device_name": device.spec.device_name, "timeout": seconds}
        try:
            reply = await runner.callback(op, frame, seconds)
        except TimeoutError:
            raise FunctionError(
                "Timeout", f"driver {driver!r} did not answer {what} of {device.path} within {seconds:g} s"
            ) from None
        except FunctionError as exc:
            raise Unavailable(f"driver {driver!r} ended while answering {what} of {device.path}: {exc.message}") from None
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise FunctionError(
                "Handled", f"driver {driver!r} failed to answer {what} of {device.path}: "
                f"{err.get('type', 'Error')}: {err.get('message', '')}", err.get("stack"),
            )  # fmt: skip
        answer = reply.get("value") or {}
        code = answer.get("code", codes.SUCCESS) if isinstance(answer, dict) else codes.UNKNOWN
        if code != codes.SUCCESS:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise DeviceError(code, message or f"driver {driver!r} refused {what} of {device.path} (code {code})")
        device.seen()
        value = answer.get("value")
        return value if isinstance(value, dict) else {}


__all__ = ["DeviceService", "device_path", "event_topic", "property_topic"]
