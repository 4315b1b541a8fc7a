"""The console's pure parts: sessions and CSRF, the assignment form's conversion and checks, bundles, charts."""

from __future__ import annotations

import io
import zipfile

import pytest

from edgefc.cloud.console import bundle
from edgefc.cloud.console.charts import sparkline
from edgefc.cloud.console.figures import Figures
from edgefc.cloud.console.session import SESSION_TTL_S, SessionKeys
from edgefc.cloud.console.settings import check, errors_from_problems, form_from_settings, settings_from_form

FUNCTION = {"name": "hello", "runtime": "python3", "handler": "index.handler", "initializer": None}


def test_sessions_are_signed_expire_and_end_with_the_admin_token() -> None:
    keys = SessionKeys("admin-token")
    cookie, session = keys.issue(auth=True, now=1000.0)
    assert "=" not in cookie  # no quoting needed in a Set-Cookie header
    assert keys.read(cookie, now=1001.0) == session and session.auth
    body, _, signature = cookie.rpartition(".")
    assert keys.read(body + "." + "0" * len(signature), now=1001.0) is None
    forged = body.replace(body[-4:], "AAAA") + "." + signature
    assert keys.read(forged, now=1001.0) is None
    assert keys.read(cookie, now=1000.0 + SESSION_TTL_S + 1) is None
    assert SessionKeys("rotated-token").read(cookie, now=1001.0) is None
    other = keys.issue(auth=True, now=1000.0)[1]
    assert keys.csrf_ok(session, keys.csrf(session)) and not keys.csrf_ok(session, keys.csrf(other))
    assert not keys.csrf_ok(session, None) and not keys.csrf_ok(session, "")
    assert keys.token_ok(" admin-token\n") and not keys.token_ok("admin")


def test_the_form_becomes_settings_and_back() -> None:
    form = {"version": "3", "mode": "continuous", "memory_mb": "128", "timeout_s": "2.5", "env": "A=1\nB=x=y\n",
            "config": '{"k": [1, 2]}', "container.ports": "8080:80/tcp\n\n9090:90", "container.privileged": "on"}
    converted = settings_from_form(form)
    assert converted.errors == {}
    assert converted.settings == {"version": 3, "mode": "continuous", "memory_mb": 128, "timeout_s": 2.5,
                                  "env": {"A": "1", "B": "x=y"}, "config": {"k": [1, 2]},
                                  "container": {"privileged": True, "ports": ["8080:80/tcp", "9090:90"]}}
    back = form_from_settings(converted.settings)
    assert settings_from_form(back).settings == converted.settings
    assert form_from_settings({"timeout_s": 3.0, "idle_timeout_s": 0.5})["timeout_s"] == "3"


def test_checks_name_the_field_with_the_gateways_words() -> None:
    checked = check({"memory_mb": "8", "timeout_s": "soon", "env": "GOOD=1\nEDGEFC_X=2\nnot a pair",
                     "container.ports": "80:80\n99999:1", "config": "{bad", "schedule": "every day"}, FUNCTION)
    errors = checked.errors
    assert errors["memory_mb"] == ["must be between 16 and 16384, got 8"]
    assert errors["timeout_s"] == ["must be a number, got 'soon'"]
    assert errors["config"][0].startswith("must be JSON")
    assert any("line 3: write KEY=value" in e for e in errors["env"])
    assert any(e.startswith("EDGEFC_X: reserved") for e in errors["env"])
    assert any("between 1 and 65535" in e for e in errors["container.ports"])
    assert "schedule" in errors
    assert check({"memory_mb": "256", "mode": "on_demand"}, FUNCTION).errors == {}
    cross = check({"mode": "continuous", "max_instances": "3"}, FUNCTION).errors
    assert "continuous function runs exactly one instance" in cross["max_instances"][0]


def test_api_problem_lines_go_to_their_fields() -> None:
    errors = errors_from_problems(["container.ports[1]: bad port", "memory_mb: too big", "something else"])
    assert errors == {"container.ports": ["[1]: bad port"], "memory_mb": ["too big"], "": ["something else"]}


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_editing_a_file_keeps_the_others_and_the_diff_shows_the_change() -> None:
    old = _zip({"index.py": "a = 1\nb = 2\n", "lib/util.py": "x = 1\n", "data.bin": "\x00\x01"})
    new = bundle.replace_file(old, "index.py", "a = 1\nb = 3\r\n")
    assert bundle.files(new)["lib/util.py"] == b"x = 1\n" and bundle.files(new)["index.py"] == b"a = 1\nb = 3\n"
    assert list(bundle.text_files(new)) == ["index.py", "lib/util.py"]
    lines = bundle.diff(old, bundle.replace_file(new, "extra.py", "y = 2\n"), "v1", "v2")
    kinds = [(line.kind, line.text) for line in lines]
    assert ("file", "extra.py") in kinds and ("add", "+y = 2") in kinds
    assert ("del", "-b = 2") in kinds and ("add", "+b = 3") in kinds
    for bad in ("../evil.py", "", "a/../../b"):
        with pytest.raises(ValueError):
            bundle.replace_file(old, bad, "x")
    with pytest.raises(ValueError):
        bundle.files(b"not a zip")


def test_sparklines_scale_from_zero_and_skip_gaps() -> None:
    line = sparkline([0, None, 50, 100], width=100, height=20)
    assert line.count == 3 and line.low == 0 and line.high == 100 and line.last == 100
    assert line.points == "0.0,18.0 50.0,10.0 100.0,2.0"
    assert sparkline([]).count == 0 and sparkline([None]).points == ""
    assert sparkline([7]).points.count(",") == 2  # one value still draws a flat line


def test_figures_are_the_gateways_history_then_the_reports_seen_since() -> None:
    figures = Figures()
    for second, mem in ((1, 100), (1, 999), (2, 200)):
        figures.add("gw", {"reported_at": f"2026-12-01T00:00:0{second}Z", "host": {"cpu_percent": 5.0},
                           "functions": [{"name": "f", "cpu_percent": 1.5, "memory_bytes": mem}]})
    series = figures.series("gw", {})
    assert series["functions"]["f"] == {"cpu": [1.5, 1.5], "memory": [100, 200]}  # one point per report time
    start = 1796083200.0  # 2026-12-01T00:00:00Z
    history = {"time": [start - 10, start + 1], "host": {"cpu_percent": [1, 2], "memory_bytes": [3, 4]},
               "functions": {"f": {"cpu_percent": [6], "memory_bytes": [8]}, "g": {"cpu_percent": [1, 1]}}}
    merged = figures.series("gw", {"history": history})
    assert merged["host"]["cpu"] == [1, 2, 5.0]  # the report at 00:00:02 came after the history's last point
    assert merged["functions"]["f"] == {"cpu": [None, 6, 1.5], "memory": [None, 8, 200]}
    assert merged["functions"]["g"]["cpu"] == [1, 1, None]


def test_deployment_stages_are_marked_done_current_or_bad() -> None:
    from edgefc.cloud.console.instances import deploy_view

    def dep(number: int, status: str, stages: list[str]) -> dict[str, object]:
        return {"number": number, "status": status, "stages": [{"stage": s} for s in stages]}

    view = deploy_view([dep(1, "succeeded", ["pending", "downloading", "applying", "succeeded"]),
                         dep(2, "applying", ["pending", "downloading", "applying"])])
    assert view["latest"]["number"] == 2 and [d["number"] for d in view["history"]] == [2, 1]
    assert [(m["stage"], m["kind"]) for m in view["marks"]] == [
        ("pending", "done"), ("downloading", "done"), ("applying", "current"), ("succeeded", "")]
    failed = deploy_view([dep(3, "rolled_back", ["pending", "downloading", "applying", "rolled_back"])])
    assert failed["marks"][-1] == {"stage": "rolled_back", "kind": "bad"}
    assert deploy_view([]) == {"latest": None, "marks": [], "history": []}


def test_an_event_cannot_be_split_by_carriage_returns() -> None:
    from edgefc.cloud.console.live import event

    raw = event("row", "a\rid: 9\r\nb\nevent: x", event_id="t1").decode()
    assert raw == "event: row\nid: t1\ndata: a\ndata: id: 9\ndata: b\ndata: event: x\n\n"
