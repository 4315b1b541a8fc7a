"""The gateway's state store: applied and previous deployments, async invocations across a reopen."""

from __future__ import annotations

from pathlib import Path

from edgefc.gateway.store import StateStore


def test_current_previous_and_failed_deployments(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    assert store.current() is None and store.previous() is None
    first = store.add_deployment("v1", "functions: []", {})
    store.mark_deployment(first, "applied")
    second = store.add_deployment("v2", "functions: []", {"a": "0" * 64})
    store.mark_deployment(second, "applied")
    failed = store.add_deployment("v3", "functions: []", {})
    store.mark_deployment(failed, "rolled_back", "a failed to start")
    current, previous, latest = store.current(), store.previous(), store.latest()
    assert current is not None and current["version"] == "v2" and current["bundles"] == {"a": "0" * 64}
    assert previous is not None and previous["version"] == "v1"
    assert latest is not None and latest["status"] == "rolled_back" and latest["message"] == "a failed to start"
    store.close()


def test_unfinished_invocations_survive_a_reopen(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.add_invocation("done", "f", b"1", {"type": "invoke"})
    store.finish_invocation("done", result=b"ok", error=None)
    store.add_invocation("pending", "f", b"2", {"type": "timer"})
    store.add_invocation("running", "g", b"3", {"type": "invoke"})
    store.start_invocation("running")
    store.close()
    again = StateStore(tmp_path / "state.db")
    left = again.unfinished_invocations()
    assert [(i, f, p) for i, f, p, _ in left] == [("pending", "f", b"2"), ("running", "g", b"3")]
    finished = again.invocation("done")
    assert finished is not None and finished["state"] == "succeeded" and finished["result"] == b"ok"
    assert again.invocation("nope") is None
    again.close()
