"""A real cloud and Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloud.harness import ROOT, AgentGatewayProcess, CloudProcess
from tests.conftest import need

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("EDGEFC_ARTIFACTS", ROOT / "test-artifacts")) / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(os.access(CHROMIUM, os.X_OK), f"Debian's chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright package")
        raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots go to {ARTIFACTS}")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    """One cloud for the module's tests; each test uses names of its own."""
    process = CloudProcess(tmp_path_factory.mktemp("console") / "cloud").start()
    yield process
    assert process.stop() == 0


@pytest.fixture
def own_cloud(tmp_path: Path) -> Iterator[CloudProcess]:
    """A cloud for one test alone (one that stops it)."""
    process = CloudProcess(tmp_path / "cloud").start()
    yield process
    process.stop()


class Browser:
    """One browser context on the cloud, recording page errors, CSP violations and dialogs (none allowed)."""

    def __init__(self, browser: Any, cloud: CloudProcess) -> None:
        self.cloud = cloud
        self.context = browser.new_context(viewport=DESKTOP, base_url=cloud.url)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.confirm_next = False  # a test that clicks a button asking "are you sure?" sets this first
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        # A refused form answers 4xx on purpose (the page says why); a 5xx, a CSP violation or a script error is a bug.
        if message.type == "error" and not re.search(r"status of 4\d\d", message.text):
            self.problems.append(f"console error: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        if self.confirm_next and dialog.type == "confirm":
            self.confirm_next = False
            dialog.accept()
            return
        self.problems.append(f"dialog opened: {dialog.message}")
        dialog.dismiss()

    def sign_in(self) -> None:
        self.page.goto("/login")
        self.page.fill("#token", self.cloud.token)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/console/instances")

    def shot(self, name: str, *, full: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full)
        return path

    def http(self) -> httpx.Client:
        """A plain HTTP client carrying this browser's cookies (to send what a page would never send)."""
        cookies = {c["name"]: c["value"] for c in self.context.cookies()}
        return httpx.Client(base_url=self.cloud.url, cookies=cookies, timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def web(browser: Any, request: pytest.FixtureRequest) -> Iterator[Browser]:
    wanted = "own_cloud" if "own_cloud" in request.fixturenames else "cloud"
    session = Browser(browser, request.getfixturevalue(wanted))
    yield session
    session.shot(f"last-{request.node.name}")  # where the test ended, for a failure's post-mortem
    session.close()
    assert session.problems == []


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Any]:
    started: list[AgentGatewayProcess] = []

    def make(cloud_url: str, instance: str, token: str) -> AgentGatewayProcess:
        gw = AgentGatewayProcess(tmp_path / f"gw{len(started)}", cloud_url=cloud_url, instance=instance,
                                 token=token).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()
