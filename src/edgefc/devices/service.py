"""The device service: drivers' requests (register, report…), applications' thing operations, and the API's.

A driver is a continuous function; it registers the devices the manifest assigns to it and reports for them.
Reports become router messages on the Link IoT Edge topics with source ``device:/{pk}/{dn}``. An application's
get/set/service request goes to the driver instance as a ``callback`` frame and is answered by the driver's
callback for that device, within a timeout. When a driver has no running instance left, its devices are
unregistered (shown offline) until a new instance registers them again.

Reports a driver makes while a deployment is being applied (Link IoT Edge drivers register and report at import,
i.e. while their instance starts) are held and routed, in order, once the deployment's routes are in place: a
device's first report is never lost. A device's model (``tsl`` in its config) types its reports, sets and service
calls (``tsl.py``). Each change of a device's status is a message on :func:`status_topic` that routes can match.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from edgefc.devices import codes
from edgefc.devices.outbox import Outbox, encode
from edgefc.devices.registry import Device, DeviceState, Registry, device_path, now_ms
from edgefc.devices.tsl import ThingModel
from edgefc.errors import DeviceError, FunctionError, Unavailable, ValidationError
from edgefc.invoker.ports import CallbackTarget, DeploymentHooks, DriverAccess, Publish
from edgefc.router.topics import validate_topic
from edgefc.tasks import TaskGroup

log = logging.getLogger("edgefc.devices")

DEFAULT_CALLBACK_TIMEOUT_S = 5.0
MAX_CALLBACK_TIMEOUT_S = 300.0

Op = Callable[[str, dict[str, Any]], Awaitable[Any]]


def property_topic(product_key: str, device_name: str) -> str:
    return f"/sys/{product_key}/{device_name}/thing/event/property/post"


def event_topic(product_key: str, device_name: str, event: str) -> str:
    return f"/sys/{product_key}/{device_name}/thing/event/{event}/post"


def status_topic(product_key: str, device_name: str) -> str:
    """Where a device's online/offline changes are published: the topic Alibaba's IoT Platform uses for device
    status, with payload ``{"status": "online"|"offline", "productKey", "deviceName", "time", "lastTime"}``."""
    return f"/as/mqtt/status/{product_key}/{device_name}"


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


class DeviceService:
    """Serves ``device.*`` (drivers) and ``thing.*`` (applications) SDK calls and the devices API."""

    def __init__(self, *, functions: DriverAccess, deployments: DeploymentHooks, publish: Publish, tasks: TaskGroup,
                 callback_timeout_s: float = DEFAULT_CALLBACK_TIMEOUT_S) -> None:  # fmt: skip
        self.functions = functions
        self.deployments = deployments
        self.publish = publish
        self.tasks = tasks
        self.registry = Registry()
        self.callback_timeout_s = callback_timeout_s
        self._alive: dict[str, set[str]] = {}  # function → its instances that became ready and have not ended
        self.outbox = Outbox(self._route, tasks)
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
        deployments.on_applied.append(self._applied)  # after messaging's own hook: the new routes are in place
        functions.handle("device", self._driver_call)
        functions.handle("thing", self._app_call)
        functions.handle("compat", self._compat_call)
        functions.listen(self._instance_event)

    def close(self) -> None:
        """Detach from the gateway (idempotent); the outbox's tasks belong to ``tasks`` and end with it."""
        if self._before_apply in self.deployments.before_apply:
            self.deployments.before_apply.remove(self._before_apply)
        if self._applied in self.deployments.on_applied:
            self.deployments.on_applied.remove(self._applied)
        self.functions.unhandle("device", self._driver_call)
        self.functions.unhandle("thing", self._app_call)
        self.functions.unhandle("compat", self._compat_call)
        self.functions.unlisten(self._instance_event)
        self.outbox.close()

    def _before_apply(self, prepared: Any) -> Callable[[], None]:
        previous = self.registry.apply(prepared.manifest.devices)
        self.outbox.hold()

        def undo() -> None:
            self.registry.restore(previous)
            self.outbox.spawn(self.outbox.release())  # the previous deployment's routes are still in place

        return undo

    async def _applied(self, prepared: Any) -> None:
        await self.outbox.release()

    async def _route(self, topic: str, body: bytes, source: str) -> None:
        await self.publish(topic, body, 0, "device", source)

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
        for device in gone:
            self.outbox.spawn(self._status(device, online=False))
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

    async def _compat_call(self, function: str, op: str, args: dict[str, Any]) -> Any:
        """``compat.invoke``: lecoresdk's ``Client.invoke_function``, whose ``invokerContext`` reaches the callee's
        ``context.invoker_context`` (edgefc's own ``fc.invoke`` has no such argument). Raises what invoke raises."""
        if op != "compat.invoke":
            raise ValidationError([f"sdk: unknown operation {op!r}"])
        name = _text(args, "name", "the function name")
        payload = args.get("payload") or b""
        if not isinstance(payload, bytes):
            raise ValidationError(["payload: must be bytes"])
        trigger = {"type": "invoke", "source": f"function:{function}", "invoker_context": args.get("invoker_context")}
        if args.get("type") == "async":
            return await self.functions.invoke_async(name, payload, trigger)
        return await self.functions.invoke(name, payload, trigger=trigger)

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
        was_online = device.online
        if not was_online:
            log.info("device %s online (registered by %s)", device.path, driver)
        device.state = DeviceState.ONLINE
        device.registered_at = device.seen()
        if not was_online:
            await self._status(device, online=True)

    async def _online(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        if device.state is DeviceState.UNREGISTERED:
            raise DeviceError(codes.DEVICE_UNREGISTERED, f"device {device.path} is not registered: call register_and_online()")
        was_online = device.online
        device.state = DeviceState.ONLINE
        device.seen()
        if not was_online:
            await self._status(device, online=True)

    async def _offline(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        if device.state is DeviceState.UNREGISTERED:
            raise DeviceError(codes.DEVICE_UNREGISTERED, f"device {device.path} is not registered: call register_and_online()")
        if device.state is DeviceState.ONLINE:
            log.info("device %s offline (its driver %s said so)", device.path, driver)
            device.state = DeviceState.OFFLINE
            await self._status(device, online=False)

    async def _unregister(self, driver: str, args: dict[str, Any]) -> None:
        device = self._own(driver, args)
        was_online = device.online
        device.state = DeviceState.UNREGISTERED
        if was_online:
            await self._status(device, online=False)

    async def _status(self, device: Device, *, online: bool) -> None:
        """Publish a change of the device's status (see :func:`status_topic`)."""
        last, device.status_at = device.status_at, now_ms()
        pk, dn = device.key
        body = {"status": "online" if online else "offline", "productKey": pk, "deviceName": dn,
                "time": device.status_at, "lastTime": last or device.status_at}  # fmt: skip
        await self.outbox.send(device.path, status_topic(pk, dn), body)

    async def _report_properties(self, driver: str, args: dict[str, Any]) -> None:
        pk = _text(args, "product_key", "the product key")
        dn = _text(args, "device_name", "the device name")
        properties = _mapping(args, "properties")
        if not properties:
            raise ValidationError(["properties: report at least one property"])
        device = self.registry.registered(driver, pk, dn)
        model = ThingModel.of(device.spec.config)
        if model is not None:
            model.check_report(properties)
        at = device.seen()
        entries = {name: {"value": value, "time": at} for name, value in properties.items()}
        device.properties.update(entries)
        await self.outbox.send(device.path, property_topic(pk, dn), entries)

    async def _report_event(self, driver: str, args: dict[str, Any]) -> None:
        pk = _text(args, "product_key", "the product key")
        dn = _text(args, "device_name", "the device name")
        name = _text(args, "name", "the event name")
        params = _mapping(args, "params", required=False)
        topic = event_topic(pk, dn, name)
        if "/" in name or validate_topic(topic):
            raise ValidationError([f"name: {name!r} cannot be a topic level (no '/', '+', '#')"])
        device = self.registry.registered(driver, pk, dn)
        model = ThingModel.of(device.spec.config)
        if model is not None:
            model.check_event(name, params)
        await self.outbox.send(device.path, topic, {"params": {"value": params, "time": device.seen()}})

    async def _tsl(self, driver: str, args: dict[str, Any]) -> str | None:
        """The device's thing model text from its config (``tsl``/``tsl_ext_info``); None without one."""
        device = self._own(driver, args)
        config = device.spec.config if isinstance(device.spec.config, dict) else {}
        if args.get("kind", "tsl") == "tsl_ext_info":
            found = config.get("tsl_ext_info", config.get("tslExtInfo"))
        else:
            found = config.get("tsl")
        if found is None or isinstance(found, str):
            return found
        return encode(found).decode()

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
        model = ThingModel.of(device.spec.config)
        if model is not None:
            model.check_get(list(keys))
        return await self._ask(device, "device.get", {"keys": list(keys)}, timeout)

    async def set_properties(self, product_key: str, device_name: str, properties: dict[str, Any],
                             timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Have the driver set properties. Raises NotFound, ValidationError, Unavailable, FunctionError, DeviceError."""
        device = self.registry.get(product_key, device_name)
        if not properties:
            raise ValidationError(["properties: give at least one property to set"])
        model = ThingModel.of(device.spec.config)
        if model is not None:
            model.check_set(properties)
        return await self._ask(device, "device.set", {"properties": dict(properties)}, timeout)

    async def call_service(self, product_key: str, device_name: str, name: str, args: dict[str, Any],
                           timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Have the driver run a service. Raises NotFound, Unavailable, FunctionError, DeviceError."""
        device = self.registry.get(product_key, device_name)
        model = ThingModel.of(device.spec.config)
        if model is not None:
            model.check_service(name, args)
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
            unregistered = device.state is DeviceState.UNREGISTERED
            how = "not registered by" if unregistered else "offline, says"
            code = codes.DEVICE_UNREGISTERED if unregistered else codes.DEVICE_OFFLINE
            raise Unavailable(f"device {device.path} is {how} its driver {driver!r}", details={"code": code})
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


__all__ = ["DeviceService", "device_path", "event_topic", "property_topic", "status_topic"]
