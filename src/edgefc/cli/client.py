"""The CLI's HTTP client of the gateway API: one place for the URL, the token and error → exit code mapping."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from edgefc.cli.contexts import GatewayBook
from edgefc.errors import ValidationError

if TYPE_CHECKING:
    import httpx  # imported when a client is made: `edgefc gateway run` never loads it

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
    """The admin token in ``<data_dir>/admin.token`` (EDGEFC_DATA_DIR, ./.edgefc); None when there is none."""
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
        import httpx

        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raises CliExit(3) when the gateway cannot be reached."""
        import httpx

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
    def fail(response: httpx.Response, *, labels: Any = None) -> NoReturn:
        """Turn an API error response into a CliExit: 4xx bad input → 2, function failure → 1, else 1.

        ``labels`` (the manifest's data) names the entries problems point at.
        """
        try:
            error = response.json().get("error", {})
        except (ValueError, AttributeError):
            error = {"type": "HTTPError", "message": response.text}
        message = render_error(error if isinstance(error, dict) else {"message": str(error)}, labels=labels)
        status = response.status_code
        if status == 401:
            message += "\n(hint: edgefc login, --token, EDGEFC_TOKEN, or --data-dir of the gateway)"
        code = EXIT_BAD_INPUT if status in (400, 401, 404, 409, 413, 422) else EXIT_FUNCTION_FAILED
        raise CliExit(message, code)

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the lines of a streaming response (server-sent events)."""
        import httpx

        try:
            with self.http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self.fail(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise CliExit(f"gateway unreachable at {self.base_url}: {exc}", EXIT_UNREACHABLE) from exc


def render_error(error: dict[str, Any], *, labels: Any = None) -> str:
    """The one rendering of an error, whoever found it (the CLI locally or the gateway): ``Type: message``,
    then each problem on its own line, then a stack if any. ``labels`` (the manifest's data) names entries.
    """
    details = error.get("details")
    problems = [str(d) for d in details] if isinstance(details, list) else []
    message = str(error.get("message", "")).strip()
    if problems and message.startswith("invalid input:"):
        message = f"invalid input ({len(problems)} problem{'s' if len(problems) != 1 else ''})"
    if labels is not None:
        # The config package is heavy and most commands never need it.
        from edgefc.config.problems import label_paths

        problems = label_paths(problems, labels)
    lines = [f"{error.get('type', 'Error')}: {message.splitlines()[0] if message else ''}".rstrip()]
    lines += [f"  {line}" for line in message.splitlines()[1:] if line.strip() not in problems]
    lines += [f"  {p}" for p in problems]
    stack = error.get("stack")
    if stack:
        lines.append("".join(stack).rstrip())
    return "\n".join(lines)


def resolve_gateway(flag: str | None, token_flag: str | None, data_dir: str | None) -> tuple[str, str | None]:
    """(URL, token) for the flags: ``--gateway`` takes a URL or a name stored by ``edgefc login``; without it
    EDGEFC_GATEWAY, then the current stored gateway, then the default. The token: ``--token``/EDGEFC_TOKEN,
    else the stored gateway's, else ``<data dir>/admin.token``. Raises CliExit(2) for an unknown name.
    """
    book = GatewayBook()
    wanted = flag or os.environ.get("EDGEFC_GATEWAY")
    stored = None
    if wanted and "://" not in wanted:
        stored = book.get(wanted)
        if stored is None:
            known = ", ".join(sorted(book.gateways)) or "none stored yet; see edgefc login"
            raise CliExit(f"no gateway named {wanted!r} (known: {known})", EXIT_BAD_INPUT)
    elif wanted:
        stored = book.by_url(wanted)
    elif book.current is not None:
        stored = book.get(book.current)
    url = stored.url if stored is not None and not (wanted and "://" in wanted) else (wanted or DEFAULT_GATEWAY)
    token = token_flag or os.environ.get("EDGEFC_TOKEN") or (stored.token if stored is not None else None)
    return url, (token.strip() if token else read_token(data_dir))


def client_from(ctx: click.Context) -> ApiClient:
    """The ApiClient of this CLI run (built lazily from --gateway/--token/--data-dir, closed at the end)."""
    obj = ctx.find_root().obj
    if isinstance(obj, ApiClient):
        return obj
    params = ctx.find_root().params
    try:
        url, token = resolve_gateway(params.get("gateway"), params.get("token"), params.get("data_dir"))
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    client = ApiClient(url, token)
    ctx.find_root().obj = client
    ctx.find_root().call_on_close(client.http.close)
    return client
