"""The device registry: the devices of the applied manifest, which driver owns each, and what it last reported.

Runtime state is plain and mutable (one event loop owns it); the specs come frozen from the manifest. Times
are Unix milliseconds, as in Link IoT Edge payloads.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from typing import Any

from edgefc.config.manifest import DeviceSpec
from edgefc.devices import codes
from edgefc.errors import DeviceError, NotFound


def now_ms() -> int:
    return int(time.time() * 1000)


def device_path(product_key: str, device_name: str) -> str:
    """``/{pk}/{dn}``: the device's source id in the router."""
    return f"/{product_key}/{device_name}"


class DeviceState(enum.StrEnum):
    """Where a device stands with its driver."""

    UNREGISTERED = "unregistered"  # its driver has not registered it (or the driver's instance ended)
    OFFLINE = "offline"  # registered, then taken offline by its driver
    ONLINE = "online"


class Device:
    """One device: its manifest entry and what the gateway knows of it now."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.state = DeviceState.UNREGISTERED
        self.properties: dict[str, dict[str, Any]] = {}  # name → {"value", "time"}
        self.last_seen: int | None = None
        self.registered_at: int | None = None
        self.status_at: int | None = None  # when its status (online/offline) last changed

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.product_key, self.spec.device_name)

    @property
    def path(self) -> str:
        return device_path(*self.key)

    @property
    def online(self) -> bool:
        return self.state is DeviceState.ONLINE

    def take_state(self, other: Device) -> None:
        """Carry over what the gateway knows of the same device (a new spec for a device that stays)."""
        self.state = other.state
        self.properties = other.properties
        self.last_seen = other.last_seen
        self.registered_at = other.registered_at
        self.status_at = other.status_at

    def seen(self) -> int:
        self.last_seen = now_ms()
        return self.last_seen

    def to_dict(self) -> dict[str, Any]:
        """The CONTRACT §4 device entry, plus ``state``; not ``config``, which only its driver sees."""
        return {
            "product_key": self.spec.product_key,
            "device_name": self.spec.device_name,
            "driver": self.spec.driver,
            "online": self.online,
            "state": self.state.value,
            "tags": dict(self.spec.tags),
            "last_seen": self.last_seen,
            "properties": {name: dict(entry) for name, entry in self.properties.items()},
        }


class Registry:
    """Every device of the applied deployment, by (product key, device name)."""

    def __init__(self) -> None:
        self._devices: dict[tuple[str, str], Device] = {}

    def apply(self, specs: Iterable[DeviceSpec]) -> dict[tuple[str, str], Device]:
        """Take a new device list; returns the previous table (for :meth:`restore`).

        A device that keeps its driver keeps its state and last properties; a new device, or one that moved to
        another driver, starts unregistered.
        """
        previous = self._devices
        self._devices = self._carried(previous, {(s.product_key, s.device_name): Device(s) for s in specs})
        return previous

    def restore(self, table: dict[tuple[str, str], Device]) -> None:
        """Put back a table :meth:`apply` returned (the deployment that brought the new one failed), with what
        its devices reported meanwhile."""
        self._devices = self._carried(self._devices, table)

    @staticmethod
    def _carried(source: dict[tuple[str, str], Device], table: dict[tuple[str, str], Device]) -> dict[tuple[str, str], Device]:
        for key, device in table.items():
            old = source.get(key)
            if old is not None and old.spec.driver == device.spec.driver:
                device.take_state(old)
        return table

    def all(self) -> list[Device]:
        return sorted(self._devices.values(), key=lambda d: d.key)

    def get(self, product_key: str, device_name: str) -> Device:
        """The device; raises NotFound."""
        device = self._devices.get((product_key, device_name))
        if device is None:
            raise NotFound(f"no device {device_path(product_key, device_name)} in the applied deployment")
        return device

    def owned(self, driver: str, product_key: str, device_name: str) -> Device:
        """A device of ``driver``, for that driver's own requests; raises NotFound for any other device."""
        device = self._devices.get((product_key, device_name))
        if device is None or device.spec.driver != driver:
            raise NotFound(
                f"device {device_path(product_key, device_name)} is not assigned to driver {driver!r} "
                "in the applied deployment"
            )
        return device

    def registered(self, driver: str, product_key: str, device_name: str) -> Device:
        """A device of ``driver`` that it registered and has online; raises NotFound or DeviceError."""
        device = self.owned(driver, product_key, device_name)
        if device.state is DeviceState.UNREGISTERED:
            raise DeviceError(codes.DEVICE_UNREGISTERED,
                              f"device {device.path} is not registered: call register_and_online() first")  # fmt: skip
        if device.state is DeviceState.OFFLINE:
            raise DeviceError(codes.DEVICE_OFFLINE, f"device {device.path} is offline: call online() first")
        return device

    def of_driver(self, driver: str) -> list[Device]:
        return [d for d in self.all() if d.spec.driver == driver]

    def find(self, tags: dict[str, str]) -> list[Device]:
        """Devices whose tags include every pair of ``tags`` (all devices for an empty dict)."""
        return [d for d in self.all() if all(d.spec.tags.get(k) == v for k, v in tags.items())]

    def driver_gone(self, driver: str) -> list[Device]:
        """The driver has no running instance left: its devices are unregistered (offline). Returns them."""
        gone = [d for d in self._devices.values() if d.spec.driver == driver and d.state is not DeviceState.UNREGISTERED]
        for device in gone:
            device.state = DeviceState.UNREGISTERED
        return gone
