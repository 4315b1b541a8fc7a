"""Function life cycle through a real gateway: continuous start, keep-alive, crash loops, failed deploys, init."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.gateway_harness import GatewayProcess, fn

SERVICE = """
import os, time

INITS = 0
STARTED = time.time()

def init(context):
    global INITS
    INITS += 1
    flag = os.environ.get("CRASH_FLAG")
    if flag and os.path.exists(flag):
        os._exit(4)  # the environment went bad after the deploy: every new instance dies while starting
    with open(os.environ["INIT_LOG"], "a") as f:
        f.write(f"{os.getpid()} {context.function.name} {context.function.version}\\n")

def handler(event, context):
    if event == b"exit":
        os._exit(3)
    return {"pid": os.getpid(), "inits": INITS, "version": context.function.version}
"""


def pids(status: dict[str, Any]) -> set[int]:
    return {i["pid"] for i in status["instances"]}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def service(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    env = {"INIT_LOG": str(tmp_path / "init.log"), "CRASH_FLAG": str(tmp_path / "crash.flag")}
    return fn("svc", mode="continuous", initializer="index.init", env=env, timeout_s=5, **settings)


def test_continuous_function_runs_from_deploy_before_any_event(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"version": "1", "functions": [service(tmp_path)]}, {"svc": SERVICE})
    status = gateway.status("svc")
    assert status["mode"] == "continuous" and status["state"] == "running"
    assert len(status["instances"]) == 1 and status["invocations"] == 0
    (inst,) = status["instances"]
    assert inst["state"] == "ready" and alive(inst["pid"])
    assert (tmp_path / "init.log").read_text().split() == [str(inst["pid"]), "svc", "1"]  # initializer already ran
    assert gateway.invoke("svc").json()["pid"] == inst["pid"]


def test_exit_of_a_continuous_instance_is_restarted_quickly(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [service(tmp_path)]}, {"svc": SERVICE})
    (old_pid,) = pids(gateway.status("svc"))
    response = gateway.invoke("svc", b"exit")
    crashed = time.monotonic()
    assert response.status_code == 502 and response.headers["X-Edgefc-Error-Type"] == "Unhandled"
    assert "exit code 3" in response.json()["error"]["message"]

    def serving() -> dict[str, Any] | None:
        r = gateway.invoke("svc")
        return r.json() if r.status_code == 200 else None

    answer = gateway.wait_for(serving, timeout=5, what="serving again")
    assert time.monotonic() - crashed < 2.0  # the first restart is immediate (target 200 ms; room for CI)
    assert answer["pid"] != old_pid and not alive(old_pid)
    status = gateway.status("svc")
    assert status["state"] == "running" and pids(status) == {answer["pid"]}
    assert status["restarts"] == 1
    assert status["last_exit"]["reason"] == "exited" and status["last_exit"]["code"] == 3
    assert status["last_exit"]["at"] > time.time() - 30


def test_crash_loop_goes_to_backoff_then_failed_and_restart_recovers(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [service(tmp_path)]}, {"svc": SERVICE})
    assert gateway.status("svc")["state"] == "running"
    flag = tmp_path / "crash.flag"
    flag.touch()  # from now on every start of the function dies in its initializer
    assert gateway.invoke("svc", b"exit").status_code == 502

    seen: list[str] = []

    def state_is(wanted: str) -> bool:
        state = gateway.status("svc")["state"]
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == wanted

    gateway.wait_for(lambda: state_is("backoff"), timeout=10, what="backoff")
    gateway.wait_for(lambda: state_is("failed"), timeout=20, what="failed")
    assert seen.index("backoff") < seen.index("failed")
    status = gateway.status("svc")
    assert status["instances"] == [] and status["restarts"] >= 8
    assert status["last_exit"]["code"] == 4 and status["last_exit"]["reason"] == "init_error"
    failed = gateway.invoke("svc")
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "Unavailable"
    restarts = status["restarts"]
    assert gateway.status("svc")["restarts"] == restarts  # it stopped trying

    flag.unlink()
    assert gateway.client is not None
    restarted = gateway.client.post("/v1/functions/svc/restart")
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["state"] == "running"
    answer = gateway.invoke("svc").json()
    assert pids(gateway.status("svc")) == {answer["pid"]} and alive(answer["pid"])


NEW_VERSIONS = {
    "import error": ("import no_such_module_for_edgefc\n" + SERVICE, "ModuleNotFoundError", None),
    "initializer raises": (SERVICE.replace("def init(context):", "def init(context):\n    raise RuntimeError('no config')"),
                           "RuntimeError: no config", "index.init"),  # fmt: skip
    "exit at import": ("import os\nos._exit(5)\n" + SERVICE, "exit code 5", None),
}


@pytest.mark.parametrize("case", NEW_VERSIONS, ids=list(NEW_VERSIONS))
@pytest.mark.parametrize("mode", ["continuous", "on_demand"])
def test_new_version_that_fails_to_start_rolls_back_and_old_keeps_running(
    gateway: GatewayProcess, tmp_path: Path, case: str, mode: str
) -> None:
    source, expected, _ = NEW_VERSIONS[case]
    other = fn("other", mode="continuous")
    changed = {**service(tmp_path), "mode": mode}
    gateway.deploy({"version": "1", "functions": [changed, other]}, {"svc": SERVICE, "other": SERVICE})
    assert gateway.invoke("svc").json()["version"] == "1"
    before = {n: pids(gateway.status(n)) for n in ("svc", "other")}

    response = gateway.deploy({"version": "2", "functions": [changed, other]}, {"svc": source, "other": SERVICE}, expect=422)
    error = response.json()["error"]
    assert error["type"] == "DeployFailed"
    assert "svc" in error["message"] and "rolled back" in error["message"]
    (detail,) = error["details"]
    assert detail["function"] == "svc"
    assert expected in detail["message"] + "".join(detail.get("stack") or [])
    if case != "exit at import":
        assert any("index.py" in line for line in detail["stack"])  # the traceback points at the user's file

    assert gateway.client is not None
    info = gateway.client.get("/v1/deployment").json()
    assert info["version"] == "1" and info["status"] == "rolled_back"
    assert {n: pids(gateway.status(n)) for n in ("svc", "other")} == before  # same instances, untouched
    assert all(alive(p) for ps in before.values() for p in ps)
    answer = gateway.invoke("svc").json()
    assert answer["version"] == "1"
    assert gateway.status("svc")["version"] == "1"


def test_initializer_runs_once_per_instance(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [service(tmp_path, max_instances=2, max_concurrency=1)]}, {"svc": SERVICE})
    status = gateway.status("svc")
    assert len(status["instances"]) == 2
    answers = [gateway.invoke("svc").json() for _ in range(6)]
    assert {a["inits"] for a in answers} == {1}
    assert {a["pid"] for a in answers} <= pids(status)
    logged = [line.split()[0] for line in (tmp_path / "init.log").read_text().splitlines()]
    assert sorted(logged) == sorted(str(p) for p in pids(status))  # one init per instance, no more

    gateway.invoke("svc", b"exit")  # a replacement instance runs the initializer once too
    gateway.wait_for(lambda: len(gateway.status("svc")["instances"]) == 2 and gateway.status("svc")["state"] == "running",
                     what="replacement")  # fmt: skip
    logged = [line.split()[0] for line in (tmp_path / "init.log").read_text().splitlines()]
    assert len(logged) == 3 and len(set(logged)) == 3
    assert all(a["inits"] == 1 for a in (gateway.invoke("svc").json() for _ in range(4)))
