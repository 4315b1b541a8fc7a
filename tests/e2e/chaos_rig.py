"""Chaos for QoS 1: readings through a gateway while its parts are killed at random; a ledger of where each went.

A device publishes QoS 1 readings ``r000001``… on ``dev/d1/temp`` to the gateway's managed Mosquitto and notes
each PUBACK: those are the *acknowledged* readings, the ones that must not be lost. Three routes carry each one:

- ``mqtt dev/+/temp → function:doubler`` (QoS 1); doubler does ``fc.publish("out/doubled", …, qos=1)`` and a
  route ``function:doubler out/# → cloud`` (QoS 1) sends that to the cloud broker: **function path**;
- ``mqtt dev/+/temp → mqtt:alarm/temp`` (QoS 1), read by a persistent subscriber on the managed broker:
  **MQTT path**;
- ``mqtt dev/+/temp → cloud`` (QoS 1), read by a persistent subscriber on the cloud broker: **cloud path**.

Meanwhile, at random instants, one of these is SIGKILLed: the gateway (then started again on the same data
dir), its managed Mosquitto (the gateway restarts it), the doubler's worker (the keep-alive restarts it); or
the cloud Mosquitto is stopped at once (SIGTERM; started again by the rig — see ``CloudBroker.kill``). At the end every acknowledged reading is looked for on each path:
delivered once, duplicated, dead-lettered (with the reason) or lost.

Used by ``tests/e2e/test_chaos.py`` (bounded, in ``make test``; longer with ``make chaos``) and by
``bench/bench_chaos.py``.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.gateway_harness import GatewayProcess, fn

PATHS = ("function", "mqtt", "cloud")
BROKER_SAVE_WINDOW_S = 0.2  # a PUBACK this close before a broker kill may predate Mosquitto's save (a starved
# broker on a loaded machine saves late; only readings missing on every path, i.e. never seen by the gateway, count)
# A PUBACK the device's network thread records this soon after a broker kill was sent before it: the killed
# broker cannot send, and a restarted one is not yet up and reconnected (tens of milliseconds). A CI run lost
# one reading whose PUBACK was recorded 4 ms after the kill began.
BROKER_ACK_LATENCY_S = 0.05
KILLS = ("gateway", "broker", "worker", "cloud")

DOUBLER = """
import json
import edgefc.sdk as fc

def handler(event, context):
    message = json.loads(event)
    fc.publish("out/doubled", message["payload"], qos=1)
"""

ROUTES = [
    {"name": "to-fn", "source": "mqtt", "topic": "dev/+/temp", "target": "function:doubler", "qos": 1},
    {"name": "fn-up", "source": "function:doubler", "topic": "out/#", "target": "cloud", "qos": 1},
    {"name": "to-alarm", "source": "mqtt", "topic": "dev/+/temp", "target": "mqtt:alarm/temp", "qos": 1},
    {"name": "to-cloud", "source": "mqtt", "topic": "dev/+/temp", "target": "cloud", "qos": 1},
]


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range: the brokers here are restarted on their port
    after a kill, and a port from the ephemeral range can be taken meanwhile by any test binding port 0."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


class CloudBroker:
    """The cloud's Mosquitto, with persistence, so its subscriber's session and queued messages survive its
    restarts."""

    def __init__(self, state_dir: Path, binary: str) -> None:
        self.state_dir = state_dir
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.state_dir}/\nautosave_on_changes true\nautosave_interval 1\n"
            f"max_queued_messages 0\nlog_dest file {self.state_dir}/mosquitto.log\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.state_dir / "mosquitto.log"
                tail = log.read_text()[-600:] if log.exists() else ""
                raise RuntimeError(f"the cloud mosquitto did not start ({self.proc.poll()}): {tail}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Take the cloud away at once. SIGTERM, not SIGKILL: to the gateway it is the same sudden loss of the
        connection with publishes in flight, but Mosquitto saves first. The guarantee ends at the cloud's
        PUBACK, and a SIGKILLed Mosquitto loses what it acknowledged since its last save (docs/routing.md):
        that loss would be the stand-in cloud's, not the gateway's."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Peer:
    """A paho client with a persistent session that reconnects quickly by itself."""

    def __init__(self, port: int, name: str, inflight: int = 20) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-{name}-{uuid.uuid4().hex[:6]}",
                                  clean_session=False)  # fmt: skip
        self.client.max_inflight_messages_set(inflight)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.connect_async("127.0.0.1", port, 10)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.connected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Subscriber(Peer):
    """Counts every copy of each reading it receives on ``filters``."""

    def __init__(self, port: int, name: str, *filters: str) -> None:
        self.filters = filters
        self.copies: collections.Counter[tuple[str, str]] = collections.Counter()  # (topic, reading) → copies
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        super().__init__(port, name)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        if not flags.session_present:
            for topic_filter in self.filters:
                client.subscribe(topic_filter, 1)
        else:
            self.subscribed.set()
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.copies[(msg.topic, msg.payload.decode())] += 1

    def count(self, topic: str, reading: str) -> int:
        with self.lock:
            return self.copies[(topic, reading)]


class Device(Peer):
    """Publishes QoS 1 readings in bursts; ``acked`` are those the broker confirmed with a PUBACK."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "device", inflight=100)
        self.acked: list[str] = []
        self.acked_at: dict[str, float] = {}  # reading → when its PUBACK came (monotonic)
        self._by_mid: dict[int, str] = {}
        self._early: set[int] = set()  # PUBACKs that came before publish() returned their mid
        self._lock = threading.Lock()
        self._next = 0
        self.client.on_publish = self._on_publish

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Never hold our lock while calling paho (its network thread holds its own lock while it calls us).
        with self._lock:
            reading = self._by_mid.pop(mid, None)
            if reading is None:
                self._early.add(mid) if not reason.is_failure else None
            elif not reason.is_failure:
                self.acked.append(reading)
                self.acked_at[reading] = time.monotonic()

    def publish_at(self, rate: float, stop: threading.Event) -> None:
        """Publish readings at ``rate`` per second until ``stop``; while the broker is away, wait for it."""
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            if not self.connected.wait(0.1):
                next_at = time.monotonic()
                continue
            self._next += 1
            reading = f"r{self._next:06d}"
            info = self.client.publish("dev/d1/temp", reading, 1)
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self.acked.append(reading)
                    self.acked_at[reading] = time.monotonic()
                else:
                    self._by_mid[info.mid] = reading
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)


@dataclass
class Ledger:
    """Where each acknowledged reading ended, per path."""

    acknowledged: int = 0
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    delivered: dict[str, int] = field(default_factory=dict)  # path → readings that arrived exactly once
    duplicated: dict[str, int] = field(default_factory=dict)  # path → readings that arrived more than once
    extra_copies: dict[str, int] = field(default_factory=dict)  # path → copies beyond the first
    dead_lettered: dict[str, int] = field(default_factory=dict)
    dead_letter_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: dict[str, list[str]] = field(default_factory=dict)  # path → readings found nowhere
    # Readings missing on every path whose PUBACK came just before a kill -9 of the managed Mosquitto: what
    # Mosquitto acknowledged before its save (docs/routing.md), never seen by the gateway.
    lost_at_broker_kill: list[str] = field(default_factory=list)
    seed: int = 0  # EDGEFC_CHAOS_SEED=<seed> replays the same kill schedule
    # For each lost reading: when its PUBACK came relative to the kills around it ("gateway-0.31": 0.31 s before).
    lost_timing: dict[str, list[str]] = field(default_factory=dict)

    @property
    def lost_total(self) -> int:
        return sum(len(v) for v in self.lost.values())

    @property
    def duplicates_fraction(self) -> float:
        arrived = sum(self.delivered.values()) + sum(self.duplicated.values())
        return sum(self.extra_copies.values()) / arrived if arrived else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "acknowledged": self.acknowledged,
            "kills": dict(self.kills),
            "delivered": self.delivered,
            "duplicated": self.duplicated,
            "extra_copies": self.extra_copies,
            "dead_lettered": self.dead_lettered,
            "dead_letter_reasons": dict(self.dead_letter_reasons),
            "lost": {path: len(readings) for path, readings in self.lost.items()},
            "lost_at_broker_kill": len(self.lost_at_broker_kill),
            "lost_examples": {path: readings[:5] for path, readings in self.lost.items() if readings},
            "lost_timing": dict(list(self.lost_timing.items())[:5]),
            "seed": self.seed,
            "duplicates_fraction": round(self.duplicates_fraction, 5),
        }


class ChaosRig:
    """The gateway, its managed broker, the cloud broker, the device and the two subscribers."""

    def __init__(self, tmp: Path, mosquitto: str, *, seed: int | None = None,
                 persistence: str | None = None) -> None:  # fmt: skip
        self.tmp = tmp
        seed = seed if seed is not None else random.randrange(1, 2**31)
        self.rng = random.Random(seed)
        self.mqtt_port = free_port()
        self.cloud = CloudBroker(tmp / "cloud", mosquitto)
        config: dict[str, Any] = {
            "mqtt": {"broker": "managed", "listen": f"127.0.0.1:{self.mqtt_port}",
                     **({"persistence": persistence} if persistence else {})},
            "cloud": {"mqtt_url": self.cloud.url},
            "queues": {"max_retries": 1000},  # kills are not the message's fault: nothing should dead-letter
        }
        self.gateway = GatewayProcess(tmp / "data", config=config)
        self.device: Device | None = None
        self.local_sub: Subscriber | None = None
        self.cloud_sub: Subscriber | None = None
        self.ledger = Ledger(seed=seed)
        self.kill_log: list[tuple[float, str]] = []  # (monotonic, what) of every kill
        self.broker_kills: list[float] = []  # when the managed Mosquitto was SIGKILLed (monotonic)

    def start(self) -> None:
        self.cloud.start()
        self.cloud_sub = Subscriber(self.cloud.port, "cloud-sub", "out/#", "dev/#")
        self.gateway.start()
        self.gateway.deploy({"functions": [fn("doubler", mode="continuous", max_concurrency=8, max_queue=1000)],
                             "routes": ROUTES}, {"doubler": DOUBLER})  # fmt: skip
        self.local_sub = Subscriber(self.mqtt_port, "local-sub", "alarm/#")
        self.device = Device(self.mqtt_port)
        for peer in (self.cloud_sub, self.local_sub, self.device):
            if not peer.connected.wait(10):
                raise TimeoutError("a chaos peer did not connect")
        for sub in (self.cloud_sub, self.local_sub):
            if not sub.subscribed.wait(10):
                raise TimeoutError("a chaos subscriber got no SUBACK")
        self._wait_links()

    def _wait_links(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                assert self.gateway.client is not None
                mqtt = self.gateway.client.get("/v1/stats").json()["mqtt"]
                if mqtt["connected"] and mqtt["cloud_connected"]:
                    return
            except Exception:  # noqa: BLE001 — the gateway is still starting
                pass
            time.sleep(0.05)
        raise TimeoutError("the gateway's MQTT links did not come up")

    # -- kills -----------------------------------------------------------------------------------------

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.gateway.pid).children(recursive=True)
        except psutil.Error:
            return []

    def kill(self, what: str) -> bool:
        """SIGKILL one part; returns False when there was nothing to kill (e.g. no worker yet)."""
        self.kill_log.append((time.monotonic(), what))
        if what == "gateway":
            broker = [p for p in self._children() if p.name() == "mosquitto"]
            self.gateway.sigkill()
            psutil.wait_procs(broker, timeout=10)  # it saves its state on the death signal, then goes
            self.gateway.start(timeout=30)
            self._wait_links()
        elif what == "broker":
            broker = [p for p in self._children() if p.name() == "mosquitto"]
            if not broker:
                return False
            self.broker_kills.append(time.monotonic())
            broker[0].send_signal(signal.SIGKILL)
        elif what == "worker":
            workers = [p for p in self._children() if p.name() != "mosquitto" and p.ppid() != self.gateway.pid]
            if not workers:
                return False
            self.rng.choice(workers).send_signal(signal.SIGKILL)
        elif what == "cloud":
            self.cloud.kill()
            time.sleep(self.rng.uniform(0.1, 0.8))
            self.cloud.start()
        else:
            raise ValueError(what)
        self.ledger.kills[what] += 1
        return True

    def _timing(self, reading: str) -> list[str]:
        """The kills within 2 s of ``reading``'s PUBACK, as what±seconds (negative: the kill came before it)."""
        assert self.device is not None
        at = self.device.acked_at.get(reading)
        if at is None:
            return ["no PUBACK time"]
        return [f"{what}{when - at:+.3f}" for when, what in self.kill_log if abs(when - at) < 2.0]

    def run(self, seconds: float, *, kinds: tuple[str, ...] = KILLS, rate: float = 500.0,
            gap: tuple[float, float] = (0.5, 2.5)) -> None:  # fmt: skip
        """The device publishes ``rate`` readings/s for ``seconds`` while one part after another is killed at
        random instants (``gap`` seconds apart); each kind comes once before they are drawn at random."""
        assert self.device is not None
        stop = threading.Event()
        publisher = threading.Thread(target=self.device.publish_at, args=(rate, stop), name="chaos-device")
        publisher.start()
        try:
            deadline = time.monotonic() + seconds
            turn = 0
            while time.monotonic() < deadline:
                time.sleep(self.rng.uniform(*gap))
                turn += 1
                self.kill(kinds[turn - 1] if turn <= len(kinds) else self.rng.choice(kinds))
        finally:
            stop.set()
            publisher.join(10)

    # -- the ledger ------------------------------------------------------------------------------------

    def _where(self, reading: str) -> dict[str, int]:
        assert self.cloud_sub is not None and self.local_sub is not None
        return {
            "function": self.cloud_sub.count("out/doubled", reading),
            "mqtt": self.local_sub.count("alarm/temp", reading),
            "cloud": self.cloud_sub.count("dev/d1/temp", reading),
        }

    def _dead_letters(self) -> dict[tuple[str, str], str]:
        """(path, reading) → reason, from the gateway's dead-letter queue."""
        assert self.gateway.client is not None
        out = {}
        for letter in self.gateway.client.get("/v1/deadletters").json()["deadletters"]:
            target, topic, payload = letter["target"], letter["topic"], letter.get("payload", "")
            path = {"function:doubler": "function", "mqtt:alarm/temp": "mqtt"}.get(target)
            if target == "cloud":
                path = "function" if topic.startswith("out/") else "cloud"
            if path:
                out[(path, payload)] = letter["error"]
        return out

    def settle(self, timeout: float) -> Ledger:
        """Wait (up to ``timeout`` s) until every acknowledged reading is somewhere on every path; the ledger."""
        assert self.device is not None
        time.sleep(0.5)  # the last PUBACKs
        acked = list(dict.fromkeys(self.device.acked))
        deadline = time.monotonic() + timeout
        dead: dict[tuple[str, str], str] = {}
        while True:
            dead = self._dead_letters()
            missing = [r for r in acked for p, n in self._where(r).items() if n == 0 and (p, r) not in dead]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        ledger = self.ledger
        ledger.acknowledged = len(acked)
        for path in PATHS:
            ledger.delivered[path] = ledger.duplicated[path] = ledger.extra_copies[path] = 0
            ledger.dead_lettered[path] = 0
            ledger.lost[path] = []
        for reading in acked:
            where = self._where(reading)
            if not any(where.values()) and not any(k in dead for k in ((p, reading) for p in PATHS)):
                at = self.device.acked_at.get(reading, 0.0)
                if any(-BROKER_ACK_LATENCY_S < kill - at < BROKER_SAVE_WINDOW_S for kill in self.broker_kills):
                    ledger.lost_at_broker_kill.append(reading)
                    continue
            for path, copies in where.items():
                if copies == 1:
                    ledger.delivered[path] += 1
                elif copies > 1:
                    ledger.duplicated[path] += 1
                    ledger.extra_copies[path] += copies - 1
                elif (path, reading) in dead:
                    ledger.dead_lettered[path] += 1
                    ledger.dead_letter_reasons[dead[(path, reading)][:80]] += 1
                else:
                    ledger.lost[path].append(reading)
                    ledger.lost_timing.setdefault(reading, self._timing(reading))
        return ledger

    def close(self) -> None:
        for peer in (self.device, self.local_sub, self.cloud_sub):
            if peer is not None:
                peer.close()
        self.gateway.stop()
        self.cloud.stop()


def ledger_json(ledger: Ledger) -> str:
    """The ledger as one JSON line (for logs and the benchmark's detail)."""
    return json.dumps(ledger.summary(), sort_keys=True)
