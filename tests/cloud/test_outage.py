"""A gateway in its own network namespace, joined to the cloud by a veth pair, through a cloud outage.

The cloud's traffic (its HTTP port and its MQTT broker's) is cut inside the namespace with iptables while the
test keeps talking to the gateway's own API over the same veth: functions keep running, QoS 1 messages for the
cloud pile up on the gateway's disk, a deployment is made in the cloud meanwhile. Once the link is back the
deployment is applied and every queued message arrives, none lost, none twice.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.harness import AgentGatewayProcess, CloudProcess, wait_for
from tests.conftest import need_binary, need_root
from tests.e2e.mqtt_peer import Mosquitto, Subscriber

pytestmark = [pytest.mark.e2e, pytest.mark.needs_root, pytest.mark.needs_mosquitto, pytest.mark.timeout(120)]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Link:
    """A namespace ``ns`` with ``inside`` (10.x.y.2) joined to the host's ``outside`` (10.x.y.1) by a veth."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.ns, self.host_if, self.ns_if = f"efc-{tag}", f"efh{tag}", f"efn{tag}"
        octet = int(tag[:2], 16) % 250 + 1
        self.outside, self.inside = f"10.254.{octet}.1", f"10.254.{octet}.2"

    def up(self) -> Link:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.ns)
        _ip("addr", "add", f"{self.outside}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.inside}/30", "dev", self.ns_if)
        _ip("-n", self.ns, "link", "set", self.ns_if, "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        return self

    def cut(self, *ports: int, restore: bool = False) -> None:
        """Drop (or, with ``restore``, stop dropping) the namespace's traffic with the host's ``ports``."""
        action = "-D" if restore else "-A"
        for port in ports:
            for chain, direction in (("OUTPUT", "--dport"), ("INPUT", "--sport")):
                subprocess.run(["ip", "netns", "exec", self.ns, "iptables", action, chain, "-p", "tcp", "-d" if chain ==
                                "OUTPUT" else "-s", self.outside, direction, str(port), "-j", "DROP"],
                               check=True, capture_output=True, timeout=10)  # fmt: skip

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)  # the veth goes with it
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)


class VethMosquitto(Mosquitto):
    """The cloud's broker, listening on loopback (for the test's subscriber) and the host end of the veth."""

    def __init__(self, state_dir: Path, address: str) -> None:
        super().__init__(state_dir)
        self.address = address

    def start(self) -> VethMosquitto:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nlistener {self.port} {self.address}\nallow_anonymous true\n"
                          + ("user root\n" if os.geteuid() == 0 else ""))  # fmt: skip
        self.proc = subprocess.Popen([self.binary, "-c", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        wait_for(lambda: _accepts(self.address, self.port), 10, "mosquitto on the veth")
        return self


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def link() -> Iterator[Link]:
    need_root()
    need_binary("iptables")
    made = Link()
    try:
        yield made.up()
    finally:
        made.down()


def test_a_gateway_cut_off_keeps_working_and_catches_up_when_the_link_returns(tmp_path: Path, link: Link) -> None:
    broker = VethMosquitto(tmp_path / "broker", link.outside).start()
    cloud = CloudProcess(tmp_path / "cloud", listen=f"{link.outside}:0").start()
    subscriber = Subscriber(broker.port, "up/#", qos=1)
    gw: AgentGatewayProcess | None = None
    try:
        inst = cloud.api("POST", "/v1/instances", 201, json={"name": "far-away"})
        cloud.function("echo", {"index.py": "def handler(event, context):\n    return b'v1:' + event\n"})
        cloud.function("echo", {"index.py": "def handler(event, context):\n    return b'v2:' + event\n"})
        path = f"/v1/instances/{inst['id']}"
        cloud.api("PUT", f"{path}/assignments/echo", 200, json={"version": 1})
        cloud.api("PUT", f"{path}/routes", 200, json=[{"name": "up", "source": "api", "topic": "up/#",
                                                       "target": "cloud", "qos": 1}])  # fmt: skip
        gw = AgentGatewayProcess(tmp_path / "gw", cloud_url=cloud.url, instance=inst["id"], token=inst["token"],
                                 config={"cloud": {"mqtt_url": f"mqtt://{link.outside}:{broker.port}"}},
                                 netns=link.ns, listen=f"{link.inside}:0").start()  # fmt: skip
        cloud.api("POST", f"{path}/deployments", 201)
        assert cloud.wait_final(inst["id"], 1)["status"] == "succeeded"
        assert gw.client is not None
        sent = 0

        def publish(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                response = gw.client.post("/v1/messages", json={"topic": f"up/{sent}", "payload": str(sent), "qos": 1})  # type: ignore[union-attr]
                assert response.status_code < 300, response.text
                sent += 1

        publish(5)
        subscriber.wait_count(5)

        link.cut(int(cloud.url.rsplit(":", 1)[1]), broker.port)
        publish(20)  # accepted on the gateway's disk, the cloud unreachable
        assert gw.invoke("echo", b"a").content == b"v1:a"  # the functions keep running
        cloud.api("PUT", f"{path}/assignments/echo", 200, json={"version": 2})
        cloud.api("POST", f"{path}/deployments", 201)
        assert cloud.deployment(inst["id"], 2)["status"] == "pending"
        queues = gw.client.get("/v1/queues").json()
        assert queues["depth"] + queues["in_flight"] >= 20, queues  # waiting on the gateway's disk
        assert len(subscriber.payloads()) == 5

        link.cut(int(cloud.url.rsplit(":", 1)[1]), broker.port, restore=True)
        assert cloud.wait_final(inst["id"], 2, timeout=60)["status"] == "succeeded"
        assert gw.invoke("echo", b"b").content == b"v2:b"
        got = subscriber.wait_count(25, timeout=60)
        numbers = sorted(int(p) for p in got)
        assert numbers == list(range(25)), numbers  # none lost, none twice
    finally:
        if gw is not None:
            gw.stop()
        subscriber.close()
        cloud.stop()
        broker.stop()
