"""Real cloud replicas and real gateways with the agent, as child processes on free ports."""

from __future__ import annotations

import io
import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from tests.e2e import gateway_harness
from tests.e2e.gateway_harness import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
EDGEFC = [sys.executable, "-m", "edgefc.cli"]


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition", every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def code_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, textwrap.dedent(text))
    return buffer.getvalue()


class CloudProcess:
    """``edgefc cloud serve`` on 127.0.0.1:0; ``client`` carries the admin token."""

    def __init__(self, data_dir: Path, *, db: str | None = None, listen: str = "127.0.0.1:0",
                 tls: tuple[Path, Path] | None = None) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.db = db
        self.listen = listen
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.client: httpx.Client | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-cloud.log"

    def start(self, timeout: float = 20.0) -> CloudProcess:
        return self.spawn().ready(timeout)

    def spawn(self) -> CloudProcess:
        """Start the process without waiting (several replicas start side by side); then ``ready()``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        info = self.data_dir / "cloud.json"
        info.unlink(missing_ok=True)
        args = [*EDGEFC, "cloud", "serve", "--data-dir", str(self.data_dir), "--listen", self.listen]
        if self.db:
            args += ["--db", self.db]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def ready(self, timeout: float = 20.0) -> CloudProcess:
        """Wait until the spawned cloud listens; stops it and raises when it does not."""
        info = self.data_dir / "cloud.json"
        try:
            wait_for(lambda: info.exists() or self.proc.poll() is not None, timeout, "the cloud to start")  # type: ignore[union-attr]
            if self.proc.poll() is not None:
                raise RuntimeError(f"cloud exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            self.url = json.loads(info.read_text())["url"]
            self.token = (self.data_dir / "admin.token").read_text().strip()
            verify: Any = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True
            self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                       timeout=30, verify=verify)  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def api(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        assert self.client is not None
        response = self.client.request(method, path, **kwargs)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def function(self, name: str, files: dict[str, str], **fields: Any) -> int:
        """Create ``name`` (once) and upload ``files`` as its next version; returns the version number."""
        assert self.client is not None
        if self.client.get(f"/v1/functions/{name}").status_code == 404:
            self.api("POST", "/v1/functions", 201, json={"name": name, "handler": "index.handler", **fields})
        made = self.api("POST", f"/v1/functions/{name}/versions", 201, content=code_zip(files))
        return int(made["number"])

    def deployment(self, instance: str, number: int) -> dict[str, Any]:
        return self.api("GET", f"/v1/instances/{instance}/deployments/{number}", 200)  # type: ignore[no-any-return]

    def wait_final(self, instance: str, number: int, timeout: float = 30.0) -> dict[str, Any]:
        final = ("succeeded", "failed", "rolled_back")
        return wait_for(lambda: (d := self.deployment(instance, number))["status"] in final and d, timeout,  # type: ignore[no-any-return]
                        f"deployment {number} to finish")  # fmt: skip


class AgentGatewayProcess(GatewayProcess):
    """A real gateway (process sandbox) whose agent talks to ``cloud_url`` as ``instance`` with ``token``."""

    def __init__(self, data_dir: Path, *, cloud_url: str, instance: str, token: str,
                 config: dict[str, Any] | None = None, netns: str | None = None, listen: str | None = None) -> None:  # fmt: skip
        token_file = data_dir.parent / f"{data_dir.name}-cloud.token"
        token_file.write_text(token + "\n")
        self.token_file = token_file
        env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        if listen:
            env["EDGEFC_TEST_LISTEN"] = listen
        self.netns = netns
        extra = dict(config or {})
        # Reports every half second and retries within a second, so that tests take seconds, not minutes.
        cloud = {"url": cloud_url, "gateway_id": instance, "token_file": str(token_file), "status_interval_s": 0.5,
                 "retry_max_s": 1.0, **extra.pop("cloud", {})}  # fmt: skip
        super().__init__(data_dir, env=env, config={"cloud": cloud, **extra})

    def start(self, timeout: float = 20.0) -> AgentGatewayProcess:
        # The gateway harness starts `edgefc`; this one starts the same CLI through the launcher with the agent.
        saved = gateway_harness.EDGEFC
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        gateway_harness.EDGEFC = [*inside, sys.executable, "-m", "tests.cloud.agent_gateway"]
        try:
            super().start(timeout)
        finally:
            gateway_harness.EDGEFC = saved
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
