"""A real gateway in a subprocess for benchmarks: start on port 0, deploy code from strings, invoke, inspect.

Like ``tests/e2e/gateway_harness.py`` but without pytest: errors are exceptions, and the invoke path is a plain
keep-alive ``http.client`` connection so that the client adds as little as possible to what is measured.
MQTT is off (``EDGEFC_MQTT__BROKER=off``): no benchmark here needs it, and a managed Mosquitto would be one
more process competing for the two cores.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import yaml

T = TypeVar("T")


class GatewayError(RuntimeError):
    """The gateway did not start, or answered an admin call with an unexpected status."""


def function(name: str, **settings: Any) -> dict[str, Any]:
    """A manifest entry for ``name`` whose code is the part named ``name`` with handler ``index.handler``."""
    return {"name": name, "code": f"./{name}", "handler": "index.handler", **settings}


def zip_source(source: str) -> bytes:
    """A function bundle holding ``index.py`` with ``source`` (dedented)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", textwrap.dedent(source))
    return buffer.getvalue()


class BenchGateway:
    """``edgefc gateway run`` as a child process, used as a context manager; ``stop`` is idempotent."""

    def __init__(self, *, isolation: str = "process", prefix: str = "edgefc-bench-", env: dict[str, str] | None = None) -> None:
        self.isolation = isolation
        self.env = env or {}
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.data_dir = Path(self._tmp.name) / "data"
        self.log_path = Path(self._tmp.name) / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.admin: httpx.Client | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._token = ""

    def __enter__(self) -> BenchGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The gateway's process id; raises GatewayError when not started."""
        if self.proc is None:
            raise GatewayError("the gateway is not running")
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> BenchGateway:
        """Start and wait until ``gateway.json`` appears; raises GatewayError with the log's tail."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "edgefc.cli", "gateway", "run", "--data-dir", str(self.data_dir),
                "--listen", "127.0.0.1:0", "--isolation", self.isolation]  # fmt: skip
        env = {**os.environ, "EDGEFC_MQTT__BROKER": "off", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        info = self.data_dir / "gateway.json"
        deadline = time.monotonic() + timeout
        while not info.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise GatewayError(f"the gateway did not start:\n{self.log_tail()}")
            time.sleep(0.02)
        self.url = json.loads(info.read_text())["url"]
        self._token = (self.data_dir / "admin.token").read_text().strip()
        self.admin = httpx.Client(base_url=self.url, headers=self.headers, timeout=120)
        return self

    @property
    def headers(self) -> dict[str, str]:
        """The admin token as an Authorization header."""
        return {"Authorization": f"Bearer {self._token}"}

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the gateway's log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait, SIGKILL if needed; remove the data dir."""
        for closer in (self._conn, self.admin):
            if closer is not None:
                closer.close()
        self._conn = self.admin = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._tmp.cleanup()

    # ---- admin calls ---------------------------------------------------------------------------------------

    def _admin(self) -> httpx.Client:
        if self.admin is None:
            raise GatewayError("the gateway is not running")
        return self.admin

    def deploy(
        self, functions: list[dict[str, Any]], sources: dict[str, str], version: str | None = None,
        routes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Apply a deployment of ``functions`` with code ``{name: source of index.py}``; raises GatewayError.

        Without ``version`` the gateway names it by its content (a version name means one content: a bench that
        redeploys other settings under one name would be refused with 409)."""
        named = {"version": version} if version is not None else {}
        manifest = yaml.safe_dump({**named, "functions": functions, "routes": routes or []}).encode()
        files: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", manifest, "application/yaml"))]
        files += [
            (name, (f"{name}.zip", zip_source(src), "application/zip")) for name, src in sources.items()
        ]
        response = self._admin().put("/v1/deployment", files=files)
        if response.status_code != 200:
            raise GatewayError(f"deploy failed ({response.status_code}): {response.text}\n{self.log_tail()}")
        return response.json()  # type: ignore[no-any-return]

    def status(self, name: str) -> dict[str, Any]:
        """``GET /v1/functions/{name}``; raises GatewayError."""
        response = self._admin().get(f"/v1/functions/{name}")
        if response.status_code != 200:
            raise GatewayError(f"status of {name}: {response.status_code} {response.text}")
        return response.json()  # type: ignore[no-any-return]

    def restart(self, name: str) -> dict[str, Any]:
        """``POST /v1/functions/{name}/restart``; raises GatewayError."""
        response = self._admin().post(f"/v1/functions/{name}/restart")
        if response.status_code != 200:
            raise GatewayError(f"restart of {name}: {response.status_code} {response.text}")
        return response.json()  # type: ignore[no-any-return]

    def metric_mean(self, metric: str, function_name: str) -> float | None:
        """The mean of a Prometheus histogram for one function (``_sum / _count``), or None if unobserved."""
        text = self._admin().get("/metrics").text
        values: dict[str, float] = {}
        for kind in ("sum", "count"):
            found = re.search(
                rf'^{metric}_{kind}{{function="{re.escape(function_name)}"}} (\S+)$', text, re.M
            )
            if found:
                values[kind] = float(found.group(1))
        if not values.get("count"):
            return None
        return values["sum"] / values["count"]

    # ---- invoking ------------------------------------------------------------------------------------------

    def invoke(self, name: str, payload: bytes = b"") -> tuple[int, bytes]:
        """One sync invoke over a kept-alive connection; returns (HTTP status, body). Reconnects once if dropped."""
        for attempt in (1, 2):
            if self._conn is None:
                parts = urlsplit(self.url)
                self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
            try:
                self._conn.request("POST", f"/v1/functions/{name}/invoke", body=payload, headers=self.headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 15.0, what: str = "a condition",
                 interval: float = 0.01) -> T:  # fmt: skip
        """Poll ``predicate`` until it returns something truthy; raises TimeoutError with the last value."""
        deadline = time.monotonic() + timeout
        last = predicate()
        while not last:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; last value {last!r}")
            time.sleep(interval)
            last = predicate()
        return last
