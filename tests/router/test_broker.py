"""The managed Mosquitto: loopback only, restarted when it dies, gone with the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from edgefc.router.broker import BrokerState, ManagedBroker, PortTaken
from tests.conftest import need_binary
from tests.e2e.gateway_harness import GatewayProcess
from tests.router.helpers import free_port, wait_for
from tests.router.rig import device, listener


async def test_broker_serves_on_loopback_and_is_restarted_after_a_crash(broker: ManagedBroker) -> None:
    config = (broker.state_dir / "mosquitto.conf").read_text()
    assert f"listener {broker.port} 127.0.0.1" in config and "syslog" not in config
    first = broker.pid
    assert first is not None
    os.killpg(first, signal.SIGKILL)
    await wait_for(
        lambda: broker.pid not in (None, first) and broker.state is BrokerState.RUNNING, 10, "a restart"
    )
    assert broker.restarts == 1
    sub, heard = await listener(broker.url, "ping")
    pub = await device(broker.url)
    await pub.publish("ping", b"after restart", 1)
    await wait_for(lambda: len(heard) == 1, 5, "a message through the restarted broker")
    await pub.close()
    await sub.close()


async def test_stop_leaves_no_process(tmp_path: Path) -> None:
    need_binary("mosquitto")
    managed = ManagedBroker(f"127.0.0.1:{free_port()}", tmp_path)
    await managed.start()
    pid = managed.pid
    assert pid is not None and psutil.pid_exists(pid)
    await managed.stop()
    assert not psutil.pid_exists(pid) and managed.state is BrokerState.STOPPED


async def test_broker_dies_with_a_sigkilled_gateway(tmp_path: Path) -> None:
    need_binary("mosquitto")
    port = free_port()
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from edgefc.router.broker import ManagedBroker
        async def main():
            broker = ManagedBroker("127.0.0.1:{port}", Path({str(tmp_path)!r}))
            await broker.start()
            print(broker.pid, flush=True)
            await asyncio.Event().wait()
        asyncio.run(main())
    """)
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    assert gateway.stdout is not None
    async with asyncio.timeout(15):
        broker_pid = int(await gateway.stdout.readline())
    assert psutil.Process(broker_pid).name() == "mosquitto"
    gateway.send_signal(signal.SIGKILL)
    await gateway.wait()
    await wait_for(lambda: not psutil.pid_exists(broker_pid), 5, "the orphaned broker to die")


async def test_a_taken_port_is_refused_naming_the_setting(tmp_path: Path) -> None:
    need_binary("mosquitto")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        managed = ManagedBroker(f"127.0.0.1:{port}", tmp_path)
        try:
            await managed.start()
        except PortTaken as exc:
            assert f"mqtt.listen 127.0.0.1:{port} is already in use" in exc.message
            assert f"pid {os.getpid()}" in exc.message  # names who holds it
        else:
            await managed.stop()
            raise AssertionError("a broker started on a port someone else listens on")
        assert managed.pid is None and not (tmp_path / "mosquitto.pid").exists()



def test_a_gateway_whose_mqtt_port_is_taken_exits_naming_mqtt_listen(tmp_path: Path) -> None:
    need_binary("mosquitto")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        gw = GatewayProcess(tmp_path / "data", config={"mqtt": {"broker": "managed", "listen": f"127.0.0.1:{port}"}})
        with pytest.raises(RuntimeError, match="gateway exited"):
            gw.start()
        log = gw.log_path.read_text()
        assert f"mqtt.listen 127.0.0.1:{port} is already in use" in log, log[-2000:]
        assert "set mqtt.listen (EDGEFC_MQTT__LISTEN) to a free host:port" in log
