"""A real gateway in a subprocess, on port 0, with its own data dir: what every e2e test starts from."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import yaml

EDGEFC = [sys.executable, "-m", "edgefc.cli"]


class GatewayProcess:
    """``edgefc gateway run`` as a child process; ``client`` speaks to its API with its token."""

    def __init__(self, data_dir: Path, *, isolation: str = "process", env: dict[str, str] | None = None,
                 config: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.isolation = isolation
        self.env = env or {}
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.client: httpx.Client | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-gateway.log"

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        info = self.data_dir / "gateway.json"
        info.unlink(missing_ok=True)
        args = [*EDGEFC, "gateway", "run", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
                "--isolation", self.isolation]  # fmt: skip
        # Tests never share the default broker port: MQTT is off unless a test's config asks for it.
        config = {"mqtt": {"broker": "off"}, **(self.config or {})}
        cfg = self.data_dir.parent / f"{self.data_dir.name}-gateway.yaml"
        cfg.write_text(yaml.safe_dump(config))
        args += ["--config", str(cfg)]
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not info.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise TimeoutError(f"gateway did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.02)
        try:
            self.url = json.loads(info.read_text())["url"]
            self.token = (self.data_dir / "admin.token").read_text().strip()
        except (OSError, ValueError, KeyError):
            self.proc.kill()  # never leave a gateway behind a failed start
            self.proc.wait()
            raise
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> int:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        if self.client is not None:
            self.client.close()
            self.client = None

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "EDGEFC_GATEWAY": self.url, "EDGEFC_TOKEN": self.token}
        return subprocess.run([*EDGEFC, *args], env=env, input=input, capture_output=True, timeout=timeout)

    # ---- deployments -----------------------------------------------------------------------------------------

    def deploy(self, manifest: dict[str, Any], sources: dict[str, str | dict[str, str]], *, expect: int = 200) -> httpx.Response:
        """Deploy a manifest (as a dict) with code given as {function: source of index.py | {file: text}}."""
        from edgefc.package import zip_directory

        work = self.data_dir.parent / "src"
        files: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", yaml.safe_dump(manifest).encode(), "application/yaml"))]
        for name, source in sources.items():
            folder = work / name
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():
                old.unlink()
            tree = source if isinstance(source, dict) else {"index.py": source}
            for fname, text in tree.items():
                (folder / fname).write_text(textwrap.dedent(text))
            data = zip_directory(folder, max_bytes=10**8, max_files=1000, label=name)
            files.append((name, (f"{name}.zip", data, "application/zip")))
        assert self.client is not None
        response = self.client.put("/v1/deployment", files=files, timeout=120)
        assert response.status_code == expect, response.text
        return response

    def invoke(self, name: str, payload: bytes = b"", **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        return self.client.post(f"/v1/functions/{name}/invoke", content=payload, **kwargs)

    def status(self, name: str) -> dict[str, Any]:
        assert self.client is not None
        response = self.client.get(f"/v1/functions/{name}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_for(self, predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def fn(name: str, **settings: Any) -> dict[str, Any]:
    """A manifest entry for function ``name`` with its code in ./name and handler index.handler."""
    return {"name": name, "code": f"./{name}", "handler": "index.handler", **settings}


def zip_of(files: dict[str, str | bytes], *, links: dict[str, str] | None = None) -> bytes:
    """A code bundle of ``files`` (name → content), plus symbolic links (name → target) when given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buffer.getvalue()
