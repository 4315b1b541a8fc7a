"""Function life cycle through a real gateway: continuous start, keep-alive, crash loops, failed deploys, init."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
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


def test_crash_loop_backs_off_keeps_restarting_and_restart_recovers(gateway: GatewayProcess, tmp_path: Path) -> None:
    # A gateway on a plant floor has nobody to type `restart`: a crash loop never ends in `failed`; the waits
    # grow up to restart_backoff_max_s, each restart is counted and written into the function's own log.
    gateway.deploy({"functions": [service(tmp_path, restart_backoff_max_s=0.5)]}, {"svc": SERVICE})
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
    gateway.wait_for(lambda: gateway.status("svc")["restarts"] >= 12, timeout=30, what="a dozen restarts")
    assert "failed" not in seen and "stopped" not in seen
    status = gateway.status("svc")
    assert status["state"] == "backoff" and status["instances"] == []
    assert status["last_exit"]["code"] == 4 and status["last_exit"]["reason"] == "init_error"
    refused = gateway.invoke("svc")
    assert refused.status_code == 503 and "backoff" in refused.json()["error"]["message"]
    assert gateway.client is not None
    lines = gateway.client.get("/v1/functions/svc/logs", params={"limit": 1000}).json()["entries"]
    notes = [e["message"] for e in lines if e["stream"] == "gateway"]
    assert sum("restarting in" in n for n in notes) >= 10, notes
    assert any("failed to start" in n for n in notes), notes

    flag.unlink()
    restarted = gateway.client.post("/v1/functions/svc/restart")
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["state"] == "running"
    answer = gateway.invoke("svc").json()
    assert pids(gateway.status("svc")) == {answer["pid"]} and alive(answer["pid"])


def test_a_crash_loop_that_heals_returns_to_running(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [service(tmp_path)]}, {"svc": SERVICE})
    flag = tmp_path / "crash.flag"
    flag.touch()
    gateway.invoke("svc", b"exit")
    gateway.wait_for(lambda: gateway.status("svc")["state"] == "backoff", what="backoff")
    flag.unlink()  # whatever broke is fixed: the next try of the keep-alive succeeds
    gateway.wait_for(lambda: gateway.status("svc")["state"] == "running", timeout=5, what="running again")
    status = gateway.status("svc")
    assert len(status["instances"]) == 1 and status["instances"][0]["state"] == "ready"
    assert gateway.invoke("svc").status_code == 200


def test_restarts_at_once_leave_one_instance(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [service(tmp_path)]}, {"svc": SERVICE})
    before = pids(gateway.status("svc"))

    def restart(answers: list[int]) -> None:
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.token}"}, timeout=30) as c:
            answers.append(c.post("/v1/functions/svc/restart").status_code)

    for _ in range(2):
        answers: list[int] = []
        threads = [threading.Thread(target=restart, args=(answers,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert answers == [200, 200, 200]
        gateway.wait_for(lambda: len(gateway.status("svc")["instances"]) == 1, timeout=5, what="exactly one instance")
        assert gateway.status("svc")["state"] == "running"
    (pid,) = pids(gateway.status("svc"))
    assert pid not in before and gateway.invoke("svc").json()["pid"] == pid
    assert gateway.status("svc")["restarts"] == 0  # asked for: not counted as crashes


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
        stack = detail["stack"]
        assert stack[0].startswith("Traceback") and "index.py" in stack[1]  # it starts at the user's own file
        assert not any("edgefc/worker" in line or "importlib" in line for line in stack)

    assert gateway.client is not None
    info = gateway.client.get("/v1/deployment").json()
    assert info["version"] == "1" and info["status"] == "rolled_back"
    assert {n: pids(gateway.status(n)) for n in ("svc", "other")} == before  # same instances, untouched
    assert all(alive(p) for ps in before.values() for p in ps)
    answer = gateway.invoke("svc").json()
    assert answer["version"] == "1"
    assert gateway.status("svc")["version"] == "1"


def init_log(tmp_path: Path) -> list[str]:
    return [line.split()[0] for line in (tmp_path / "init.log").read_text().splitlines()]


def test_initializer_runs_once_per_instance_of_a_continuous_function(gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.deploy({"functions": [service(tmp_path)]}, {"svc": SERVICE})
    (pid,) = pids(gateway.status("svc"))
    assert [gateway.invoke("svc").json()["inits"] for _ in range(5)] == [1] * 5
    assert init_log(tmp_path) == [str(pid)]

    gateway.invoke("svc", b"exit")  # the replacement instance runs the initializer once too
    gateway.wait_for(lambda: pids(gateway.status("svc")) - {pid}, what="replacement")
    (new_pid,) = pids(gateway.status("svc"))
    answers = [gateway.invoke("svc").json() for _ in range(3)]
    assert [(a["pid"], a["inits"]) for a in answers] == [(new_pid, 1)] * 3
    assert init_log(tmp_path) == [str(pid), str(new_pid)]


def test_initializer_runs_once_per_instance_of_a_scaled_out_function(gateway: GatewayProcess, tmp_path: Path) -> None:
    source = SERVICE.replace('    return {"pid"', '    if event == b"slow":\n        time.sleep(0.5)\n    return {"pid"')
    gateway.deploy({"functions": [{**service(tmp_path), "mode": "on_demand", "max_instances": 2}]}, {"svc": source})
    probe = init_log(tmp_path)
    assert len(probe) == 1  # the deploy proved the initializer on a probe instance, since stopped
    assert gateway.client is not None
    ids = [gateway.invoke("svc", b"slow", headers={"X-Edgefc-Invocation-Type": "async"}).json()["invocation_id"]
           for _ in range(4)]  # fmt: skip

    def results() -> list[dict[str, Any]] | None:
        found = [gateway.client.get(f"/v1/invocations/{i}").json() for i in ids]  # type: ignore[union-attr]
        return found if all(f["state"] == "succeeded" for f in found) else None

    answers = [json.loads(base64.b64decode(f["result_base64"])) for f in gateway.wait_for(results, what="all done")]
    serving = {a["pid"] for a in answers}
    assert len(serving) == 2 and {a["inits"] for a in answers} == {1}
    assert sorted(init_log(tmp_path)) == sorted([*probe, *map(str, serving)])
