"""Running on a real gateway: ``make run`` keeps the user's deployment, ``make dist`` builds a wheel that runs a
gateway from a fresh virtual environment, and ``install-service`` writes a unit systemd accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.cli.harness import ECHO, clean_env, run, write_project
from tests.conftest import need, need_binary
from tests.e2e.gateway_harness import fn

REPO = Path(__file__).resolve().parents[2]


class Started:
    """A gateway started by some command (make, a venv's edgefc), found through its data dir's gateway.json."""

    def __init__(self, args: list[str], data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        info = data_dir / "gateway.json"
        deadline = time.monotonic() + 40
        while not info.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"no gateway came up:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        found = json.loads(info.read_text())
        self.url, self.pid = found["url"], found["pid"]
        self.token = (data_dir / "admin.token").read_text().strip()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def version(self, *, wait: bool = False, timeout: float = 30) -> str | None:
        """The applied deployment's version; with ``wait``, once there is one (a deploy at start runs after the
        API is up)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get("/v1/deployment").json()["version"]
            if found is not None or not wait or time.monotonic() > deadline:
                return found  # type: ignore[no-any-return]
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to the whole process group (make, its shell, the gateway), then wait for the gateway's exit."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 30
        while (self.data_dir / "gateway.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the gateway stops its instances after make has gone


def test_make_run_deploys_the_quickstart_only_into_an_empty_data_dir(tmp_path: Path) -> None:
    need(shutil.which("make") is not None, "make")
    data = tmp_path / "data"
    env = clean_env(tmp_path, EDGEFC_MQTT__BROKER="off", EDGEFC_ISOLATION="process")
    args = ["make", "-s", "run", "LISTEN=127.0.0.1:0", f"DATA_DIR={data}"]
    gw = Started(args, data, env, tmp_path / "run1.log")
    try:
        assert gw.version(wait=True) is not None
        assert "hello" in {f["name"] for f in gw.get("/v1/functions").json()}  # the quickstart
        # The README's next step: add a function to the quickstart and deploy it; nothing is removed, so no question.
        examples = tmp_path / "examples"
        shutil.copytree(REPO / "examples", examples)
        gw_env = {**env, "EDGEFC_GATEWAY": gw.url, "EDGEFC_TOKEN": gw.token}
        assert run("init", "mine", "--dir", str(examples / "quickstart"), env=gw_env).returncode == 0
        done = run("deploy", str(examples / "quickstart" / "deployment.yaml"), env=gw_env)
        assert done.returncode == 0, done.stderr
        assert b"started: mine" in done.stdout and b"removed" not in done.stdout, done.stdout
        mine = gw.version()
    finally:
        gw.stop()
    again = Started(args, data, env, tmp_path / "run2.log")
    try:
        assert again.version() == mine
        assert "keeping the deployment" in (tmp_path / "run2.log").read_text()
    finally:
        again.stop()

    bad = subprocess.run([*args, "MQTT_LISTEN=nowhere"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert bad.returncode != 0 and b"EDGEFC_MQTT__LISTEN: 'nowhere' is not host:port" in bad.stderr, bad


def test_the_service_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze")
    done = run("gateway", "install-service", "--unit-dir", str(tmp_path), env=clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "edgefc.service"
    text = unit.read_text()
    for line in ("Restart=always", "StateDirectory=edgefc", "StandardOutput=journal", "StandardError=journal",
                 f"ExecStart={sys.executable} -m edgefc.cli gateway run --data-dir /var/lib/edgefc"):
        assert line in text.splitlines(), (line, text)
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stderr.strip() and not checked.stdout.strip(), checked
    # The check is real: the same unit with a bad value is reported.
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Restart=always", "Restart=sometimes"))
    complaint = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "sometimes" in complaint.stderr, complaint
    refused = run("gateway", "install-service", "--data-dir", "relative/dir", "--stdout", env=clean_env(tmp_path))
    assert refused.returncode == 2 and b"absolute" in refused.stderr


def test_the_wheel_runs_a_gateway_from_a_fresh_venv(tmp_path: Path) -> None:
    need(shutil.which("make") is not None, "make")
    dist = tmp_path / "dist"
    built = subprocess.run(["make", "-s", "dist", f"DIST_DIR={dist}"], cwd=REPO, capture_output=True, timeout=300)
    assert built.returncode == 0, built.stderr.decode()[-3000:]
    wheels = list(dist.glob("edgefc-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # Resolving every dependency from an index takes ~30 s here: the new venv borrows them from this one's
    # site-packages instead (a plain path entry: this checkout's editable edgefc is not picked up), installs the
    # wheel alone, and `pip check` proves that what the wheel declares is what it gets.
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_relative_to(REPO))
    (site / "borrowed-deps.pth").write_text(ours + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(venv / "bin" / "python")]
    installed = subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheels[0])],
                               capture_output=True, timeout=300)  # fmt: skip
    assert installed.returncode == 0, installed.stderr.decode()[-3000:]
    checked = subprocess.run([*pip, "check"], capture_output=True, timeout=120)
    assert checked.returncode == 0, checked.stdout.decode()[-3000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import edgefc; print(edgefc.__file__)"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert where.stdout.startswith(str(site)), where
    env = clean_env(tmp_path)
    version = subprocess.run([str(venv / "bin" / "edgefc"), "--version"], capture_output=True, env=env, timeout=60)
    assert version.stdout.startswith(b"edgefc "), version
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"mqtt": {"broker": "off"}, "isolation": "process"}))
    data = tmp_path / "data"
    gw = Started([str(venv / "bin" / "edgefc"), "gateway", "run", "--config", str(config), "--data-dir", str(data),
                  "--listen", "127.0.0.1:0"], data, env, tmp_path / "venv-gateway.log")  # fmt: skip
    try:
        assert httpx.get(gw.url + "/healthz", timeout=30).status_code == 200
        # It runs functions too: the worker and fork server come from the wheel, not from this checkout.
        path = write_project(tmp_path / "p", {"functions": [fn("f")]}, {"f": ECHO})
        env_gw = {**env, "EDGEFC_GATEWAY": gw.url, "EDGEFC_TOKEN": gw.token}
        done = subprocess.run([str(venv / "bin" / "edgefc"), "deploy", str(path)], env=env_gw, capture_output=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        invoked = subprocess.run([str(venv / "bin" / "edgefc"), "invoke", "f", "--data", "from the wheel"],
                                 env=env_gw, capture_output=True, timeout=60)  # fmt: skip
        assert invoked.stdout == b"from the wheel\n", invoked
    finally:
        gw.stop()
