"""The managed MQTT broker: a Mosquitto child process on loopback, restarted when it dies.

The child runs in its own process group (a Ctrl-C to the gateway's terminal is the gateway's to handle) and
gets SIGTERM from the kernel if the gateway dies (PR_SET_PDEATHSIG), so a SIGKILLed gateway leaves no broker.
SIGTERM, not SIGKILL: on SIGTERM Mosquitto writes its persistence file, so the QoS 1 messages it already
acknowledged to devices but not yet handed to the gateway survive and reach the restarted gateway. A restart
that comes before that old broker is gone waits for it (its pid is in the state dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import random
import shutil
import signal
from pathlib import Path

from edgefc.errors import Unavailable

log = logging.getLogger("edgefc.broker")
MOSQUITTO = "/usr/sbin/mosquitto"
_PR_SET_PDEATHSIG = 1


class BrokerState(enum.Enum):
    """Where the managed broker is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"


def _binary() -> str | None:
    return MOSQUITTO if os.access(MOSQUITTO, os.X_OK) else shutil.which("mosquitto")


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills it when the forking thread's process dies.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ManagedBroker:
    """Mosquitto on ``listen`` (``host:port``, loopback) with its state in ``state_dir``.

    Raises ValueError for a ``listen`` that is not ``host:port``.
    """

    def __init__(
        self, listen: str, state_dir: Path, *, ready_timeout: float = 10.0, backoff_max: float = 30.0
    ) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"mqtt.listen '{listen}' is not host:port")
        self.host, self.port = host.strip("[]"), int(port)
        self.state_dir = Path(state_dir)
        self.state = BrokerState.STOPPED
        self.restarts = 0
        self._ready_timeout = ready_timeout
        self._backoff_max = backoff_max
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
            "autosave_interval 10",
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
            binary,
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if not await self._wait_ready(self._process):
            await _terminate(self._process, 1.0)
            self.state = BrokerState.STOPPED
            raise Unavailable(
                f"mosquitto did not accept connections on {self.host}:{self.port} within "
                f"{self._ready_timeout}s (see {self.state_dir / 'mosquitto.log'})"
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
        delay = 0.1
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            self.restarts += 1
            self.state = BrokerState.BACKOFF
            log.warning("mosquitto exited with %s; restarting in %.1fs", code, delay)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff_max)
            try:
                await self._spawn()
                delay = 0.1
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
