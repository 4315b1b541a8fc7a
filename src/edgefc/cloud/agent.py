"""The gateway's cloud agent: pulls desired state by long poll, fetches code by hash, applies, reports.

It needs five things of its gateway, written down as :class:`GatewayPort`; the composition root hands it an
object that has them. Everything it does is network I/O on the gateway's event loop, so it never holds up local
work; while the cloud is away (for days) the gateway keeps running what it last applied, and the agent retries
with capped, jittered backoff. A wrong or rotated token is logged as an error and shown in :meth:`status`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import ssl
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from edgefc.cloud.deployments import VERSION_PREFIX
from edgefc.config.gateway import CloudConfig, LimitsConfig
from edgefc.errors import DeployFailed, EdgefcError, ValidationError
from edgefc.supervisor.policy import RestartPolicy

log = logging.getLogger("edgefc.cloud.agent")

POLL_WAIT_S = 25.0
DOWNLOAD_ATTEMPTS = 3  # a bundle that fails its sha256 check this often fails the deployment
MAX_STATUS_FUNCTIONS = 200
MAX_STATUS_DEVICES = 200
STATUS_HISTORY_S = 600.0  # how much CPU and memory history a status carries, for the console's charts
HISTORY_EVERY_S = 60.0  # how often a status carries it
MAX_REPORT_BYTES = 200 * 1024  # the cloud takes 256 KiB; status and answers are trimmed below this
SKEW_WARN_S = 300.0
_STATUS_KEYS = ("name", "mode", "state", "isolation", "version", "restarts", "last_exit", "invocations", "errors",
                "timeouts", "cold_starts", "duration_ms", "cpu_percent", "memory_bytes", "memory_limit_bytes")  # fmt: skip


class GatewayPort(Protocol):
    """What the agent needs from its gateway."""

    async def deploy(self, manifest_text: str, uploads: dict[str, bytes]) -> dict[str, Any]:
        """Apply as ``PUT /v1/deployment`` does; raises ValidationError, DeployFailed (rolled back), EdgefcError."""

    async def deployment_info(self) -> dict[str, Any]:
        """As ``GET /v1/deployment``: at least ``version``."""

    async def stored_bundle(self, sha256: str) -> bytes | None:
        """The zip of a bundle the gateway already stores, or None."""

    def functions_status(self) -> list[dict[str, Any]]:
        """As ``GET /v1/functions``."""

    def host_stats(self) -> dict[str, Any]:
        """The ``host`` part of ``GET /v1/stats``."""

    def stats_history(self, seconds: float) -> dict[str, Any]:
        """The ``history`` part of ``GET /v1/stats?history=<seconds>`` (the console draws its charts from it)."""

    def devices(self) -> list[dict[str, Any]]:
        """As ``GET /v1/devices``: each device with its driver, online state and last properties."""

    async def query_logs(self, function: str, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /v1/functions/{function}/logs`` with ``params`` → (HTTP status, JSON body)."""


class AgentState(enum.StrEnum):
    """Where the agent stands with the cloud."""

    STARTING = "starting"
    CONNECTED = "connected"
    OFFLINE = "offline"  # the cloud cannot be reached; retrying
    UNAUTHORIZED = "unauthorized"  # the cloud refuses this gateway's id or token


class _Rejected(Exception):
    """The cloud answered 401: wrong id or token."""


class _Refused(Exception):
    """The cloud refused a request for another reason (4xx other than 401, or 5xx)."""


class CloudAgent:
    """One gateway's link to the cloud; ``run()`` until cancelled."""

    def __init__(self, port: GatewayPort, config: CloudConfig, *, poll_wait_s: float = POLL_WAIT_S) -> None:
        if not (config.url and config.gateway_id and config.token_file):
            raise ValidationError(["cloud: url, gateway_id and token_file are all needed to connect to a cloud"])
        self.port = port
        self.config = config
        self.poll_wait_s = poll_wait_s
        self.status_interval_s = config.status_interval_s
        self.backoff_cap_s = config.retry_max_s
        self.state = AgentState.STARTING
        self.last_error: str | None = None
        self.last_contact: float | None = None
        self.applied = 0
        self.clock_skew_s: float | None = None
        self._answered: deque[str] = deque(maxlen=256)
        self._history_sent = float("-inf")
        self._max_bundle = LimitsConfig().max_bundle_bytes
        self._client: httpx.AsyncClient | None = None

    def status(self) -> dict[str, Any]:
        """For the gateway's own status: state, last error, last contact, applied cloud deployment, clock skew."""
        return {"state": self.state.value, "last_error": self.last_error, "last_contact": self.last_contact,
                "deployment": self.applied, "clock_skew_s": self.clock_skew_s, "url": self.config.url}  # fmt: skip

    async def run(self) -> None:
        """Poll, apply, report and answer until cancelled; never raises for anything the cloud does."""
        verify: Any = True
        if self.config.ca_file:
            verify = await asyncio.to_thread(ssl.create_default_context, cafile=str(self.config.ca_file))
        timeout = httpx.Timeout(15.0, read=self.poll_wait_s + 15.0)
        async with httpx.AsyncClient(base_url=str(self.config.url), verify=verify, timeout=timeout) as client:
            self._client = client
            info = await self.port.deployment_info()
            self.applied = _number_of(info.get("version"))
            async with asyncio.TaskGroup() as group:
                group.create_task(self._status_loop(), name="cloud-status")
                await self._poll_loop(group)

    # ---- the long poll -------------------------------------------------------------------------------------------

    async def _poll_loop(self, group: asyncio.TaskGroup) -> None:
        backoff = self._backoff()
        while True:
            try:
                response = await self._call("GET", "/v1/agent/desired",
                                            params={"after": self.applied, "wait": self.poll_wait_s})  # fmt: skip
                body = response.json()
                self._check_clock(body.get("server_time"))
                for ask in body.get("requests") or []:
                    if ask.get("id") not in self._answered:
                        self._answered.append(ask.get("id"))
                        group.create_task(self._answer(ask), name=f"cloud-answer-{ask.get('id')}")
                if body.get("deployment"):
                    await self._apply(body["deployment"])
                backoff.reset()
            except (_Rejected, _Refused, httpx.HTTPError, OSError, ValueError) as exc:
                self._trouble(exc)
                await asyncio.sleep(backoff.on_exit(0.0).delay)

    def _backoff(self) -> RestartPolicy:
        return RestartPolicy(first_delay=0.5, cap=self.backoff_cap_s, give_up_after=1 << 30)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with this gateway's credentials; raises _Rejected (401), _Refused (other errors), httpx errors."""
        assert self._client is not None and self.config.token_file is not None
        try:
            token = (await asyncio.to_thread(Path(self.config.token_file).read_text)).strip()
        except OSError as exc:
            raise _Rejected(f"cannot read cloud.token_file {self.config.token_file}: {exc.strerror}") from None
        headers = {"Authorization": f"Bearer {token}", "X-Edgefc-Instance": str(self.config.gateway_id)}
        response = await self._client.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401:
            raise _Rejected(_error_text(response))
        if response.status_code >= 400:
            raise _Refused(f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}")
        self.last_contact = time.time()
        if self.state is not AgentState.CONNECTED:
            log.info("connected to the cloud at %s as instance %s", self.config.url, self.config.gateway_id)
        self.state, self.last_error = AgentState.CONNECTED, None
        return response

    def _trouble(self, exc: Exception) -> None:
        if isinstance(exc, _Rejected):
            state, text = AgentState.UNAUTHORIZED, f"the cloud rejected this gateway's credentials: {exc}"
        else:
            state, text = AgentState.OFFLINE, f"cloud unreachable at {self.config.url}: {exc!r}"
        if (state, text) != (self.state, self.last_error):
            (log.error if state is AgentState.UNAUTHORIZED else log.warning)("%s; retrying with backoff", text)
        self.state, self.last_error = state, text

    def _check_clock(self, server_time: Any) -> None:
        if not isinstance(server_time, int | float):
            return
        skew = time.time() - float(server_time)
        warn = abs(skew) > SKEW_WARN_S and (self.clock_skew_s is None or abs(self.clock_skew_s) <= SKEW_WARN_S)
        self.clock_skew_s = skew
        if warn:
            log.warning("this gateway's clock is %+.0f s off the cloud's; deployments are unaffected (they go by "
                        "number), but the times in its logs and reports are off by as much", skew)  # fmt: skip

    # ---- applying a deployment -----------------------------------------------------------------------------------

    async def _apply(self, deployment: dict[str, Any]) -> None:
        number = int(deployment["number"])
        artifacts: dict[str, str] = deployment.get("artifacts") or {}
        log.info("cloud deployment %d: fetching code of %d function(s)", number, len(artifacts))
        await self._report(number, "downloading", f"fetching the code of {len(artifacts)} function(s)")
        uploads: dict[str, bytes] = {}
        fetched = 0
        for function, sha in sorted(artifacts.items()):
            data = await self.port.stored_bundle(sha)
            if data is None:
                data = await self._download(number, function, sha)
                if data is None:
                    self.applied = max(self.applied, number)  # failed: the cloud will not offer it again
                    return
                fetched += 1
            uploads[function] = data
        await self._report(number, "applying", f"downloaded {fetched}, already had {len(uploads) - fetched}; applying")
        try:
            result = await self.port.deploy(yaml.safe_dump(deployment["manifest"], sort_keys=False), uploads)
        except DeployFailed as exc:
            await self._report(number, "rolled_back", exc.message, _traceback(exc.details))
        except ValidationError as exc:
            await self._report(number, "failed", "the gateway refused the deployment:\n" + "\n".join(exc.problems))
        except EdgefcError as exc:
            await self._report(number, "failed", f"{exc.type}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 — a bug in applying must reach the operator, not end the agent
            log.exception("cloud deployment %d: applying failed unexpectedly", number)
            await self._report(number, "failed", f"internal error while applying: {exc!r}",
                               "".join(traceback.format_exception(exc)))  # fmt: skip
        else:
            parts = [f"{key}: {', '.join(result[key])}" for key in ("started", "unchanged", "removed") if result.get(key)]
            await self._report(number, "succeeded", "; ".join(parts) or "applied")
        self.applied = max(self.applied, number)

    async def _download(self, number: int, function: str, sha: str) -> bytes | None:
        """The bundle, its sha256 checked; after DOWNLOAD_ATTEMPTS mismatches the deployment fails (None)."""
        backoff = self._backoff()
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                response = await self._call("GET", f"/v1/agent/artifacts/{sha}")
            except (_Rejected, _Refused, httpx.HTTPError, OSError) as exc:
                self._trouble(exc)  # the cloud is away: not the artifact's fault, wait for it
                await asyncio.sleep(backoff.on_exit(0.0).delay)
                continue
            data = response.content
            got = hashlib.sha256(data).hexdigest()
            if got == sha and len(data) <= self._max_bundle:
                return data
            text = (f"the code of {function!r} does not match its sha256 (expected {sha}, got {got}); "
                    f"refused it (attempt {attempt} of {DOWNLOAD_ATTEMPTS})")  # fmt: skip
            log.warning("cloud deployment %d: %s", number, text)
            await self._report(number, "downloading", text)
            await asyncio.sleep(backoff.on_exit(0.0).delay)
        await self._report(number, "failed", f"the code of {function!r} failed its sha256 check {DOWNLOAD_ATTEMPTS} "
                                             "times; nothing was applied, the gateway runs its previous deployment")  # fmt: skip
        return None

    async def _report(self, number: int, stage: str, message: str, trace: str | None = None) -> None:
        """Deliver one stage report, retrying until the cloud has it (stages must not be lost)."""
        body = {"deployment": number, "stage": stage, "message": message[:4000], "traceback": trace,
                "time": time.time()}  # fmt: skip
        backoff = self._backoff()
        while True:
            try:
                await self._call("POST", "/v1/agent/report", json=body)
                return
            except _Refused as exc:
                log.error("cloud refused the %s report of deployment %d: %s", stage, number, exc)
                return
            except (_Rejected, httpx.HTTPError, OSError) as exc:
                self._trouble(exc)
                await asyncio.sleep(backoff.on_exit(0.0).delay)

    # ---- status and answers --------------------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            try:
                await self._call("POST", "/v1/agent/report", json={"time": time.time(), "status": await self._status()})
            except (_Rejected, httpx.HTTPError, OSError) as exc:
                self._trouble(exc)  # a rotated token shows here first: a long poll may be holding the old one
            except _Refused as exc:
                log.warning("the cloud refused a status report: %s", exc)
            await asyncio.sleep(self.status_interval_s)

    async def _status(self) -> dict[str, Any]:
        functions = [{k: f.get(k) for k in _STATUS_KEYS} | {"instances": len(f.get("instances") or [])}
                     for f in self.port.functions_status()[:MAX_STATUS_FUNCTIONS]]  # fmt: skip
        info = await self.port.deployment_info()
        status: dict[str, Any] = {"functions": functions, "host": self.port.host_stats(),
                  "deployment": {"version": info.get("version"), "status": info.get("status"),
                                 "message": (info.get("message") or "")[:2000]},
                  "agent": self.status()}  # fmt: skip
        status["devices"] = self.port.devices()[:MAX_STATUS_DEVICES]
        # The history changes slowly and weighs the most: once a minute is enough for the console's charts.
        if time.monotonic() - self._history_sent >= HISTORY_EVERY_S:
            status["history"] = self.port.stats_history(STATUS_HISTORY_S)
            self._history_sent = time.monotonic()
        for extra in ("history", "devices"):  # the console's extras go first when a report is too big
            if len(json.dumps(status, default=str)) > MAX_REPORT_BYTES:
                status.pop(extra, None)
        while len(json.dumps(status, default=str)) > MAX_REPORT_BYTES and status["functions"]:
            status["functions"] = status["functions"][: len(status["functions"]) // 2]
        return status

    async def _answer(self, ask: dict[str, Any]) -> None:
        params = {str(k): str(v) for k, v in (ask.get("params") or {}).items()}
        function = params.pop("function", "")
        try:
            code, body = await self.port.query_logs(function, params)
        except EdgefcError as exc:
            code, body = exc.http_status, {"error": exc.to_dict()}
        entries = body.get("entries") if isinstance(body, dict) else None
        while isinstance(entries, list) and entries and len(json.dumps(body, default=str)) > MAX_REPORT_BYTES:
            entries = entries[: len(entries) // 2]
            body = {**body, "entries": entries, "truncated": True}
        try:
            await self._call("POST", f"/v1/agent/answers/{ask.get('id')}", json={"status": code, "body": body})
        except (_Rejected, _Refused, httpx.HTTPError, OSError) as exc:
            log.warning("could not answer the cloud's %s request: %s", ask.get("kind"), exc)


def _number_of(version: Any) -> int:
    """``cloud-7`` → 7; anything else (a local deployment, none) → 0."""
    text = str(version or "")
    tail = text[len(VERSION_PREFIX):]
    return int(tail) if text.startswith(VERSION_PREFIX) and tail.isdigit() else 0


def _traceback(details: Any) -> str | None:
    """The tracebacks of the functions that failed to start (DeployFailed details), as one text."""
    if not isinstance(details, list):
        return None
    parts = []
    for d in details:
        if isinstance(d, dict):
            parts.append(f"{d.get('function')}: {d.get('type')}: {d.get('message')}\n" + "".join(d.get("stack") or []))
    return "\n".join(parts) or None


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]
