"""The CLI's HTTP client of the gateway API: one place for the URL, the token and error → exit code mapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

DEFAULT_GATEWAY = "http://127.0.0.1:9999"

EXIT_OK = 0
EXIT_FUNCTION_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


class CliExit(click.ClickException):
    """A CLI failure with its CONTRACT §5 exit code (1 function failed, 2 bad input, 3 unreachable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def read_token(data_dir: str | None) -> str | None:
    """The admin token: EDGEFC_TOKEN, else ``<data_dir>/admin.token``; None when neither exists."""
    token = os.environ.get("EDGEFC_TOKEN")
    if token:
        return token.strip()
    directory = Path(data_dir or os.environ.get("EDGEFC_DATA_DIR") or "./.edgefc")
    try:
        return (directory / "admin.token").read_text().strip()
    except OSError:
        return None


class ApiClient:
    """A thin client: every CLI command is one or a few calls of the gateway's HTTP API."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raises CliExit(3) when the gateway cannot be reached."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliExit(f"gateway unreachable at {self.base_url}: {exc}", EXIT_UNREACHABLE) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body; an API error becomes a CliExit with the right code."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            self.fail(response)
        return response.json() if response.content else None

    @staticmethod
    def fail(response: httpx.Response) -> NoReturn:
        """Turn an API error response into a CliExit: 4xx bad input → 2, function failure → 1, else 1."""
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {"type": "HTTPError", "message": response.text}
        message = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        details = error.get("details")
        if isinstance(details, list):
            message += "".join(f"\n  {d}" for d in details if str(d) not in message)
        stack = error.get("stack")
        if stack:
            message += "\n" + "".join(stack).rstrip()
        status = response.status_code
        if status == 401:
            message += "\n(hint: pass --token, set EDGEFC_TOKEN, or --data-dir of the gateway)"
        code = EXIT_BAD_INPUT if status in (400, 401, 404, 409, 413, 422) else EXIT_FUNCTION_FAILED
        raise CliExit(message, code)

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the lines of a streaming response (server-sent events)."""
        try:
            with self.http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self.fail(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise CliExit(f"gateway unreachable at {self.base_url}: {exc}", EXIT_UNREACHABLE) from exc


def client_from(ctx: click.Context) -> ApiClient:
    """The ApiClient the top-level group put on the context (built lazily from --gateway/--token)."""
    obj = ctx.find_root().obj
    if isinstance(obj, ApiClient):
        return obj
    params = ctx.find_root().params
    url = params.get("gateway") or os.environ.get("EDGEFC_GATEWAY") or DEFAULT_GATEWAY
    token = params.get("token") or read_token(params.get("data_dir"))
    client = ApiClient(url, token)
    ctx.find_root().obj = client
    ctx.find_root().call_on_close(client.http.close)
    return client


def echo_err(text: str) -> None:
    print(text, file=sys.stderr)
