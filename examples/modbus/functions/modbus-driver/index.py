"""A Modbus TCP driver: each device is a Modbus server (unit) whose holding registers are its properties.

Device config::

    host: 127.0.0.1          # the device (or gateway) speaking Modbus TCP
    port: 502
    unit: 1                  # Modbus unit / device id
    properties:
      temperature: {register: 0, scale: 0.1}                 # read-only unless writable: true
      setpoint:    {register: 1, scale: 0.1, writable: true}
      pump:        {register: 2, writable: true}             # raw 0..65535; signed: true for -32768..32767

Driver config: ``poll_s`` (default 1). Every poll reads the registers of each device in one request and
reports their values; a device that stops answering goes offline and comes back online when it answers
again. Sets write the registers and read them back; a get reads them fresh.
"""

import inspect
import logging
import threading

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

import edgefc.sdk as fc

log = logging.getLogger("modbus-driver")

UNKNOWN = 100000
INVALID_PARAM = 100001
SERVICE_UNREACHABLE = 100008
PROPERTY_NOT_EXIST = 109002
PROPERTY_READ_ONLY = 109003

# pymodbus renamed the unit keyword (slave → device_id, 3.10); speak whichever this version has.
_UNIT = "device_id" if "device_id" in inspect.signature(ModbusTcpClient.read_holding_registers).parameters else "slave"


class Register:
    def __init__(self, name, spec):
        self.name = name
        self.address = int(spec["register"])
        self.scale = float(spec.get("scale", 1))
        self.signed = bool(spec.get("signed", False))
        self.writable = bool(spec.get("writable", False))

    def decode(self, raw):
        if self.signed and raw >= 0x8000:
            raw -= 0x10000
        value = raw * self.scale
        return round(value, 6) if self.scale != 1 else int(value)

    def encode(self, value):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fc.driver.DeviceError(INVALID_PARAM, f"{self.name} must be a number, got {value!r}")
        raw = round(value / self.scale)
        low, high = (-0x8000, 0x7FFF) if self.signed else (0, 0xFFFF)
        if not low <= raw <= high:
            raise fc.driver.DeviceError(INVALID_PARAM, f"{self.name}={value!r} does not fit a register")
        return raw & 0xFFFF


class ModbusDevice:
    def __init__(self, info):
        config = info.config or {}
        self.name = f"/{info.product_key}/{info.device_name}"
        self.unit = int(config.get("unit", 1))
        self.registers = {name: Register(name, spec) for name, spec in (config.get("properties") or {}).items()}
        self.modbus = ModbusTcpClient(config.get("host", "127.0.0.1"), port=int(config.get("port", 502)), timeout=2, retries=1)
        self.lock = threading.Lock()  # one request at a time on the connection
        self.online = True
        self.client = fc.driver.ThingClient(info.product_key, info.device_name, on_get=self.get, on_set=self.set)

    def _call(self, method, *args, **kwargs):
        with self.lock:
            if not self.modbus.connected and not self.modbus.connect():
                raise fc.driver.DeviceError(SERVICE_UNREACHABLE, f"{self.name}: no Modbus connection")
            try:
                response = getattr(self.modbus, method)(*args, **kwargs, **{_UNIT: self.unit})
            except ModbusException as exc:
                self.modbus.close()
                raise fc.driver.DeviceError(SERVICE_UNREACHABLE, f"{self.name}: {exc}") from None
        if response.isError():
            raise fc.driver.DeviceError(UNKNOWN, f"{self.name}: Modbus error {response}")
        return response

    def read(self, names):
        chosen = [self.registers[n] for n in names]
        if not chosen:
            return {}
        first = min(r.address for r in chosen)
        count = max(r.address for r in chosen) - first + 1
        raw = self._call("read_holding_registers", first, count=count).registers
        return {r.name: r.decode(raw[r.address - first]) for r in chosen}

    def get(self, keys):
        unknown = [k for k in keys if k not in self.registers]
        if unknown:
            raise fc.driver.DeviceError(PROPERTY_NOT_EXIST, f"{self.name} has no property {unknown[0]!r}")
        return self.read(keys or list(self.registers))

    def set(self, properties):
        for name, value in properties.items():
            register = self.registers.get(name)
            if register is None:
                raise fc.driver.DeviceError(PROPERTY_NOT_EXIST, f"{self.name} has no property {name!r}")
            if not register.writable:
                raise fc.driver.DeviceError(PROPERTY_READ_ONLY, f"{name} is read-only")
            register.encode(value)
        for name, value in properties.items():
            register = self.registers[name]
            self._call("write_register", register.address, register.encode(value))
        values = self.read(list(properties))
        self.client.report_properties(values)
        return values

    def poll(self):
        try:
            values = self.read(list(self.registers))
        except fc.driver.DeviceError as exc:
            if self.online:
                log.warning("%s stopped answering: %s", self.name, exc.message)
                self.client.offline()
                self.online = False
            return
        if not self.online:
            log.info("%s answers again", self.name)
            self.client.online()
            self.online = True
        if values:
            self.client.report_properties(values)


def run(devices, period):
    stop = threading.Event()
    while True:
        for device in devices:
            try:
                device.poll()
            except Exception:  # one device's trouble must not stop the others
                log.exception("polling %s failed", device.name)
        if stop.wait(period):
            return


def init(context):
    period = float((fc.config() or {}).get("poll_s", 1.0))
    devices = []
    for info in fc.driver.devices():
        device = ModbusDevice(info)
        device.client.register_and_online()
        devices.append(device)
    threading.Thread(target=run, args=(devices, period), name="modbus-poll", daemon=True).start()


def handler(event, context):
    return {"devices": [d.device_name for d in fc.driver.devices()]}
