"""The managed MQTT broker: a Mosquitto child process on loopback, restarted when it dies.

The child runs in its own session (a Ctrl-C to the gateway's terminal is the gateway's to handle) and gets
SIGTERM from the kernel if the gateway dies (PR_SET_PDEATHSIG), so a SIGKILLed gateway leaves no broker. The
death signal is set by util-linux's ``setpriv --pdeathsig`` exec'ing Mosquitto, not by Python code between
fork and exec (unsafe while other threads hold locks). SIGTERM, not SIGKILL: on SIGTERM Mosquitto writes its
persistence file, so the QoS 1 messages it already acknowledged to devices but not yet handed to the gateway
survive and reach the restarted gateway. A restart that comes before that old broker is gone waits for it (its
pid is in the state dir).

Before starting, the port of ``mqtt.listen`` is checked: taken by someone else, the gateway refuses to start
with a message naming the setting, rather than talking to a stranger's broker. After starting, the listener is
confirmed to be our Mosquitto's own socket. Restarts after a crash back off (capped, jittered).

Persistence (``mqtt.persistence``): ``every_change`` (the default) has Mosquitto save its state after every
change (``autosave_on_changes``), so a broker killed with SIGKILL loses at most the messages it acknowledged in
the instant before its save; ``interval`` saves every 10 s, ``memory`` only on a clean stop. Either way a
SIGKILLed *gateway* loses nothing: its broker gets SIGTERM and saves. docs/routing.md has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import os
import shutil
import signal
import socket
from pathlib import Path

import psutil

from edgefc.backoff import Backoff
from edgefc.errors import Unavailable

log = logging.getLogger("edgefc.broker")
MOSQUITTO = "/usr/sbin/mosquitto"
SETPRIV = "/usr/bin/setpriv"


class BrokerPersistence(enum.StrEnum):
    """When the managed Mosquitto saves its state (``mqtt.persistence``); what a kill -9 of it can lose."""

    EVERY_CHANGE = "every_change"  # after every change: at most the last network read's messages
    INTERVAL = "interval"  # every 10 s and on a clean stop: up to 10 s of acknowledged messages
    MEMORY = "memory"  # only on a clean stop: everything it held


class BrokerState(enum.Enum):
    """Where the managed broker is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"


# Mosquitto settings per persistence choice. "interval 0" would mean "never" for the timed autosave.
_AUTOSAVE = {
    BrokerPersistence.EVERY_CHANGE: ["autosave_on_changes true", "autosave_interval 1"],
    BrokerPersistence.INTERVAL: ["autosave_interval 10"],
    BrokerPersistence.MEMORY: ["autosave_interval 0"],
}


def _binary() -> str | None:
    return MOSQUITTO if os.access(MOSQUITTO, os.X_OK) else shutil.which("mosquitto")


def _death_signal_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM`` when util-linux has it: it sets the death signal and execs the broker."""
    setpriv = SETPRIV if os.access(SETPRIV, os.X_OK) else shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class PortTaken(Unavailable):
    """Raised by ``ManagedBroker.start`` when ``mqtt.listen``'s port is used by another process."""


def _port_holder(host: str, port: int) -> str:
    """Who listens on ``port``, as "pid N (name)" where the system tells us, else ""."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    except (psutil.Error, OSError):
        pass
    return ""


def check_port_free(host: str, port: int) -> None:
    """Raise PortTaken, naming ``mqtt.listen`` and the holder, when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mosquitto binds: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise Unavailable(f"mqtt.listen {host}:{port}: {exc.strerror}") from None
            holder = _port_holder(host, port)
            raise PortTaken(
                f"mqtt.listen {host}:{port} is already in use{' by ' + holder if holder else ''}; "
                "stop that process or set mqtt.listen (EDGEFC_MQTT__LISTEN) to a free host:port"
            ) from None


def _owns_listener(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a listening socket on ``port``."""
    try:
        conns = psutil.Process(pid).net_connections(kind="inet")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


class ManagedBroker:
    """Mosquitto on ``listen`` (``host:port``, loopback) with its state in ``state_dir``.

    Raises ValueError for a ``listen`` that is not ``host:port``.
    """

    def __init__(
        self, listen: str, state_dir: Path, *, ready_timeout: float = 10.0, backoff_max: float = 30.0,
        persistence: BrokerPersistence = BrokerPersistence.EVERY_CHANGE,
    ) -> None:  # fmt: skip
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"mqtt.listen '{listen}' is not host:port")
        self.host, self.port = host.strip("[]"), int(port)
        self.state_dir = Path(state_dir)
        self.state = BrokerState.STOPPED
        self.restarts = 0
        self.persistence = BrokerPersistence(persistence)
        self._ready_timeout = ready_timeout
        self._backoff = Backoff(0.1, backoff_max)
        self._process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @staticmethod
    def available() -> bool:
        """Whether a mosquitto binary is installed."""
        return _binary() is not None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running broker's pid, if any."""
        return self._process.pid if self._process and self._process.returncode is None else None

    def write_config(self) -> Path:
        """Write ``mosquitto.conf`` into the state dir and return its path."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "mosquitto.conf"
        lines = [
            "# written by edgefc; changes are overwritten at the next start",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",  # loopback only: the listener above never binds a public address
            "persistence true",
            f"persistence_location {self.state_dir}/",
            f"pid_file {self.state_dir / 'mosquitto.pid'}",
            *_AUTOSAVE[self.persistence],
            f"log_dest file {self.state_dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to its own user and cannot write state_dir
        config.write_text("\n".join(lines) + "\n")
        return config

    async def start(self) -> None:
        """Start the broker and wait until it accepts connections.

        Raises Unavailable when mosquitto is not installed or does not come up within ``ready_timeout``.
        """
        if _binary() is None:
            raise Unavailable("mosquitto is not installed (apt-get install mosquitto)")
        self._stopping = False
        await self._wait_for_previous()
        check_port_free(self.host, self.port)
        await self._spawn()
        self._watch = asyncio.create_task(self._keep_alive(), name="mqtt-broker-watch")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL to its process group after ``grace`` seconds."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            await asyncio.shield(_terminate(process, grace))
        self.state = BrokerState.STOPPED

    def _previous_pid(self) -> int | None:
        """The pid of a broker an earlier gateway started on this state dir, if it still runs."""
        try:
            pid = int((self.state_dir / "mosquitto.pid").read_text().split()[0])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        # A stale pid file names some other process by now.
        return pid if str(self.state_dir / "mosquitto.conf").encode() in argv else None

    async def _wait_for_previous(self, grace: float = 5.0) -> None:
        """Let the broker of a killed gateway finish writing its state (and free the port) before ours starts."""
        pid = await asyncio.to_thread(self._previous_pid)
        if pid is None:
            return
        log.warning(
            "mosquitto %d of an earlier run still uses %s; waiting for it to exit", pid, self.state_dir
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            while loop.time() < deadline:
                os.kill(pid, 0)
                await asyncio.sleep(0.02)  # not our child: polling with a deadline is all there is
            os.kill(pid, signal.SIGKILL)

    async def _spawn(self) -> None:
        binary = _binary()
        assert binary is not None
        config = await asyncio.to_thread(self.write_config)
        self.state = BrokerState.STARTING
        self._process = await asyncio.create_subprocess_exec(
            *_death_signal_prefix(),
            binary,
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        if not await self._wait_ready(self._process):
            await _terminate(self._process, 1.0)
            self.state = BrokerState.STOPPED
            raise Unavailable(
                f"mosquitto did not accept connections on {self.host}:{self.port} within "
                f"{self._ready_timeout}s (see {self.state_dir / 'mosquitto.log'})"
            )
        if not await asyncio.to_thread(_owns_listener, self._process.pid, self.port):
            # Something else answered on the port (it was taken between our check and mosquitto's bind).
            await _terminate(self._process, 1.0)
            self.state = BrokerState.STOPPED
            holder = await asyncio.to_thread(_port_holder, self.host, self.port)
            raise PortTaken(
                f"mqtt.listen {self.host}:{self.port} is served by {holder or 'another process'}, not by the "
                "Mosquitto edgefc started; set mqtt.listen (EDGEFC_MQTT__LISTEN) to a free host:port"
            )
        self.state = BrokerState.RUNNING
        log.info("mosquitto %d listening on %s:%d", self._process.pid, self.host, self.port)

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout
        while loop.time() < deadline and process.returncode is None:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.02)  # polling a port with a deadline; mosquitto has no readiness signal
                continue
            writer.close()
            await writer.wait_closed()
            return True
        return False

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            assert self._process is not None
            started = loop.time()
            code = await self._process.wait()
            if self._stopping:
                return
            if loop.time() - started > 10.0:
                self._backoff.reset()  # it ran for a while: this is a new failure, not a crash loop
            self.restarts += 1
            self.state = BrokerState.BACKOFF
            delay = self._backoff.next()
            log.warning("mosquitto exited with %s; restarting in %.2fs", code, delay)
            await asyncio.sleep(delay)
            try:
                check_port_free(self.host, self.port)
                await self._spawn()
            except (Unavailable, OSError) as exc:
                log.error("restarting mosquitto failed: %s", exc)
                self.state = BrokerState.BACKOFF


async def _terminate(process: asyncio.subprocess.Process, grace: float) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await process.wait()
