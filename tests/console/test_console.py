"""The console in a real headless Chromium against a real cloud and a real gateway with its agent."""

from __future__ import annotations

import re
import textwrap
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.cloud.harness import code_zip
from tests.console.conftest import PHONE, Browser

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

V1 = textwrap.dedent("""\
    import logging

    def handler(event, context):
        logging.getLogger("hello").warning("served <b>%s</b> <script>window.pwned = 1</script>", event.decode())
        return b"v1:" + event
""")
V2 = {"index.py": V1.replace('b"v1:"', 'b"v2:"')}
SENSOR = {"index.py": """
    import edgefc.sdk as fc

    CLIENTS = []

    def init(context):
        for info in fc.driver.devices():
            client = fc.driver.ThingClient(info.product_key, info.device_name)
            client.register_and_online()
            client.report_properties({"temperature": 21.5, "label": "<i>warm</i>"})
            CLIENTS.append(client)

    def handler(event, context):
        return b""
"""}
DEVICES = "- product_key: pk1\n  device_name: sensor-1\n  driver: sensor\n  tags: {room: lab}\n"
ROUTES = "- name: nowhere\n  source: api\n  topic: /never/#\n  target: function:hello\n"


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def test_sign_in_create_upload_assign_deploy_and_follow_logs(web: Browser, make_gateway: Any) -> None:
    page = web.page
    web.sign_in()

    # A function: created, its first version written in the editor, a second uploaded as a zip, and a diff.
    page.get_by_role("link", name="Functions", exact=True).click()
    page.fill("#f-name", "hello")
    page.get_by_role("button", name="Create function", exact=True).click()
    page.wait_for_url("**/console/functions/hello/edit")
    page.wait_for_selector(".editor.enhanced pre .tok-kw")  # the highlighter drew the starter code
    page.fill("#text", V1)
    web.shot("editor")
    page.get_by_role("button", name="Save as new version", exact=True).click()
    page.wait_for_url("**/edit?version=1&file=index.py")
    assert "Saved index.py as version 1" in _text(page, ".flash")
    assert page.locator(".editor pre .tok-def", has_text="handler").count() == 1
    page.goto("/console/functions/hello")
    page.set_input_files("#code", files=[{"name": "hello.zip", "mimeType": "application/zip",
                                          "buffer": code_zip(V2)}])
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_url("**/console/functions/hello")
    assert "Uploaded version 2" in _text(page, ".flash")
    page.get_by_role("button", name="Show diff", exact=True).click()
    page.wait_for_url("**/diff?a=1&b=2")
    assert page.locator("table.diff tr.del", has_text='b"v1:"').count() == 1
    assert page.locator("table.diff tr.add", has_text='b"v2:"').count() == 1
    web.shot("diff")

    # An instance: its token shown once, given to a real gateway that connects through its agent.
    page.get_by_role("link", name="Instances", exact=True).click()
    page.fill("#f-name", "line-4")
    page.get_by_role("button", name="Create instance", exact=True).click()
    token = _text(page, "#token-value")
    instance = _text(page, "#instance-id")
    assert len(token) > 30 and instance.startswith("gw-")
    web.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == token
    web.shot("instance-token")
    gw = make_gateway(web.cloud.url, instance, token)

    # The assignment form checks as the user types, with the gateway's rules, next to the field.
    page.select_option("#assign-fn", "hello")
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url(f"**/console/instances/{instance}/assign/hello")
    assert page.input_value("#f-version") == "2"
    page.fill("#f-memory_mb", "8")
    error = page.locator("#err-memory_mb")
    error.get_by_text("must be between 16 and 16384, got 8").wait_for()
    assert page.get_attribute("#f-memory_mb", "aria-invalid") == "true"
    page.fill("#f-env", "GREETING=hi\nEDGEFC_SECRET=x")
    page.locator("#err-env").get_by_text("reserved").wait_for()
    web.shot("assign-errors")
    page.fill("#f-memory_mb", "128")
    page.fill("#f-env", "GREETING=hi")
    expect(page.locator("#err-memory_mb")).to_have_text("")
    expect(page.locator("#err-env")).to_have_text("")
    page.get_by_role("button", name="Save assignment", exact=True).click()
    page.wait_for_url(f"**/console/instances/{instance}")
    assert "Assigned hello version 2" in _text(page, ".flash")

    # A device driver (through the API), then the routes and devices forms.
    web.cloud.function("sensor", SENSOR, initializer="index.init")
    web.cloud.api("PUT", f"/v1/instances/{instance}/assignments/sensor", 200, json={"version": 1, "mode": "continuous"})
    page.reload()
    page.fill("#f-routes", ROUTES)
    page.get_by_role("button", name="Save routes").click()
    assert "Saved routes." in _text(page, ".flash")
    page.fill("#f-devices", DEVICES.replace("driver: sensor", "driver: hello"))
    page.get_by_role("button", name="Save devices").click()
    assert "must be a continuous function" in _text(page, "#err-devices")
    page.fill("#f-devices", DEVICES)
    page.get_by_role("button", name="Save devices").click()
    assert "Saved devices." in _text(page, ".flash")

    # Deploy and watch the stages arrive over server-sent events: the page is never reloaded.
    page.click("#deploy")
    page.wait_for_url(f"**/console/instances/{instance}#deployments")
    page.evaluate("window.__sameDocument = true")
    page.locator("#deploy-status").get_by_text("succeeded").wait_for(timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("ol.stages li.done").all_inner_texts() == ["pending", "downloading", "applying", "succeeded"]
    web.shot("instance-deployed")
    assert gw.invoke("hello", b"warm").content == b"v2:warm"

    # The gateway's page: its function with state, and charts filled from its reports.
    page.goto(f"/console/instances/{instance}/gateway")
    page.locator("#functions-table td.name", has_text="hello").wait_for()
    # The warm invocation above shows up with the next report, over the live stream.
    page.locator("#functions-table tr", has_text="hello").locator(".badge", has_text="idle").wait_for()
    page.locator("#functions-table svg polyline").nth(1).wait_for(state="attached", timeout=20_000)
    device = page.locator("#devices-table tr", has_text="/pk1/sensor-1")
    device.get_by_text("temperature = 21.5").wait_for()
    assert "label = <i>warm</i>" in device.inner_text() and page.locator("#devices-table i").count() == 0
    web.shot("gateway")

    # Logs: follow, invoke through the gateway, and the new line appears — its markup shown as text.
    page.goto(f"/console/instances/{instance}/logs")
    page.locator("#log-rows").get_by_text("served <b>warm</b>").wait_for()
    page.click("#follow")
    page.locator("#follow-status").get_by_text("following").wait_for()
    marker = f"m{int(time.time() * 1000)}"
    assert gw.invoke("hello", marker.encode()).status_code == 200
    row = page.locator("#log-rows tr", has_text=marker)
    row.wait_for(timeout=20_000)
    assert f"served <b>{marker}</b> <script>window.pwned = 1</script>" in row.inner_text()
    assert page.locator("#log-rows b").count() == 0 and page.evaluate("window.pwned") is None
    web.shot("logs-follow")

    # The filters are the gateway's own query: text, then a level no line has.
    page.get_by_role("button", name="Stop following").click()
    page.fill("#lf-q", marker)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(f"**q={marker}**")
    assert page.locator("#log-rows tr").count() == 1
    page.select_option("#lf-level", "error")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**level=error**")
    assert _text(page, "#log-rows") == "No lines match."

    # A phone-sized window: the same pages, nothing wider than the screen.
    page.set_viewport_size(PHONE)
    for name, path in (("phone-instance", f"/console/instances/{instance}"),
                       ("phone-assign", f"/console/instances/{instance}/assign/hello"),
                       ("phone-gateway", f"/console/instances/{instance}/gateway"),
                       ("phone-logs", f"/console/instances/{instance}/logs")):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        web.shot(name)


def test_escaping_csrf_and_sign_in_errors(web: Browser) -> None:
    page = web.page
    page.goto("/console/functions")
    page.wait_for_url("**/login?next=/console/functions")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert _text(page, "#token-error") == "That is not the admin token."
    assert page.get_attribute("#token", "aria-invalid") == "true"
    web.sign_in()
    cookie = next(c for c in web.context.cookies() if c["name"] == "edgefc_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # A name holding markup is text everywhere it shows.
    evil = "<script>alert('x')</script><img src=x onerror=alert(2)>"
    made = web.cloud.api("POST", "/v1/instances", 201, json={"name": evil})
    page.goto("/console/instances")
    assert page.locator("table td.name a", has_text=evil).count() == 1
    page.goto(f"/console/instances/{made['id']}")
    assert _text(page, "h1").startswith(evil)
    assert page.locator("main img, main script").count() == 0
    web.shot("escaped-name")
    # Rotating the token asks first, then shows the new one once.
    web.confirm_next = True
    page.get_by_role("button", name="Rotate token").click()
    rotated = _text(page, "#token-value")
    assert len(rotated) > 30 and rotated != made["token"] and not web.confirm_next
    # A function name with markup is refused by the rules, and the error stands next to the name field.
    page.goto("/console/functions")
    page.fill("#f-name", "<script>")
    page.get_by_role("button", name="Create function", exact=True).click()
    assert "'<script>' (string) is not a valid name" in _text(page, "#err-name")
    assert page.input_value("#f-name") == "<script>"

    # Forms without their CSRF field are refused and change nothing; with it, the same post works.
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    with web.http() as http:
        assert "script-src 'self'" in http.get("/console/functions").headers["content-security-policy"]
        refused = http.post("/console/functions", data={"name": "sneaky", "handler": "index.handler"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        wrong = http.post("/console/functions", data={"name": "sneaky", "handler": "index.handler",
                                                      "csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert web.cloud.client is not None
        assert web.cloud.client.get("/v1/functions/sneaky").status_code == 404
        # The session also opens /v1, but an unsafe method needs the CSRF header there too.
        assert http.get("/v1/functions").status_code == 200
        assert http.post("/v1/functions", json={"name": "sneaky", "handler": "index.handler"}).status_code == 401
        done = http.post("/console/functions", data={"name": "sneaky", "handler": "index.handler",
                                                     "csrf_token": csrf})
        assert done.status_code == 303
        assert web.cloud.client.get("/v1/functions/sneaky").status_code == 200
        assert http.post("/logout").status_code == 403  # sign-out is a form like the others

    # Signing out drops the cookie: the console asks to sign in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto("/console/functions")
    assert re.search(r"/login\?next=", page.url)


def test_lists_of_100_instances_and_50_functions_load_under_a_second(web: Browser) -> None:
    # The module's cloud may already hold a few from the other tests: top up to exactly 100 and 50.
    have = len(web.cloud.api("GET", "/v1/functions", 200))
    for n in range(50 - have):
        web.cloud.api("POST", "/v1/functions", 201, json={"name": f"fn-{n:02d}", "handler": "index.handler"})
    have = len(web.cloud.api("GET", "/v1/instances", 200))
    for n in range(100 - have):
        web.cloud.api("POST", "/v1/instances", 201, json={"name": f"gateway {n:03d}"})
    web.sign_in()
    timings = {}
    for path, rows in (("/console/instances", 100), ("/console/functions", 50)):
        web.page.goto(path)
        web.page.goto(path)  # the second load is what an operator sees (warm connection, cached static files)
        assert web.page.locator("main table tbody tr").count() == rows
        timings[path] = web.page.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()")
    print(f"\nconsole load times (ms): {timings}")
    assert all(ms < 1000 for ms in timings.values()), timings
    web.shot("instances-100")


def test_keyboard_only_use_and_a_prompt_shutdown_with_live_pages_open(own_cloud: object, web: Browser) -> None:
    made = web.cloud.api("POST", "/v1/instances", 201, json={"name": "kb"})
    page = web.page
    page.goto("/login")
    # The token field takes the focus by itself (autofocus), once the page is in: no click, only the keyboard.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'token'")
    page.keyboard.type(web.cloud.token)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/instances")
    focused = []
    for _ in range(4):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert focused[:3] == ["Skip to content", "edgefc cloud", "Functions"], focused
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/functions")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the skip link moves the focus to the page's content
    assert page.evaluate("document.activeElement.id") == "main"

    # A console tab with a live stream open does not hold up the cloud's shutdown.
    page.goto(f"/console/instances/{made['id']}")
    page.locator("[data-live-mark=deploy-live]").get_by_text("live").wait_for()
    started = time.monotonic()
    assert web.cloud.stop() == 0
    assert time.monotonic() - started < 5
    page.goto("about:blank")  # before the page's EventSource retries a cloud that is gone
