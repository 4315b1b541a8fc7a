"""A Modbus TCP device to try the Modbus driver with: pymodbus's own server with a block of holding registers.

    python examples/modbus/simulator.py --port 5020      # then: edgefc deploy examples/modbus/deployment.yaml

The tests start it in-process with :class:`Simulator` on a port the OS picks.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import threading
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

# pymodbus renamed the unit keyword (slave → device_id, 3.10).
_UNIT = "device_id" if "device_id" in inspect.signature(ModbusTcpClient.read_holding_registers).parameters else "slave"


class Simulator:
    """A pymodbus TCP server on its own thread and event loop; ``port`` is known once :meth:`start` returns."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, units: tuple[int, ...] = (1,),
                 registers: list[int] | None = None) -> None:  # fmt: skip
        values = registers or [0] * 16
        # pymodbus blocks are 1-based: register 0 on the wire is block address 1.
        self.context = ModbusServerContext(
            devices={u: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, list(values))) for u in units}, single=False
        )
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> Simulator:
        self._thread = threading.Thread(target=self._run, name="modbus-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the Modbus simulator did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        try:
            self._server = ModbusTcpServer(self.context, address=(self.host, self.port))
            serving = asyncio.ensure_future(self._server.serve_forever())
            while getattr(self._server, "transport", None) is None and not serving.done():
                await asyncio.sleep(0.005)
            self.port = self._server.transport.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 — reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await serving

    def stop(self) -> None:
        """Shut the server down (idempotent)."""
        server, self._server = self._server, None
        if self._loop is not None and server is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(server.shutdown(), self._loop).result(10)
            self._thread.join(10)

    def registers(self, unit: int = 1, address: int = 0, count: int = 1) -> list[int]:
        """Holding registers as the device has them now (read over Modbus, as any client would)."""
        with self._client() as client:
            response = client.read_holding_registers(address, count=count, **{_UNIT: unit})
            if response.isError():
                raise RuntimeError(f"reading registers failed: {response}")
            return list(response.registers)

    def set_registers(self, values: list[int], unit: int = 1, address: int = 0) -> None:
        """Change holding registers, as the device's own process would."""
        with self._client() as client:
            response = client.write_registers(address, list(values), **{_UNIT: unit})
            if response.isError():
                raise RuntimeError(f"writing registers failed: {response}")

    def _client(self) -> ModbusTcpClient:
        client = ModbusTcpClient(self.host, port=self.port, timeout=2)
        if not client.connect():
            raise ConnectionError(f"cannot reach the simulator on {self.host}:{self.port}")
        return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    args = parser.parse_args()
    sim = Simulator(host=args.host, port=args.port, registers=[215, 200, 0] + [0] * 13).start()
    print(f"Modbus TCP simulator on {args.host}:{sim.port} (unit 1; holding registers 0..15); Ctrl-C stops it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
