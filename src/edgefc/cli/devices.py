"""``edgefc devices list | show | get | set | call``: the devices API from the command line.

Values on the command line are ``key=value`` pairs whose value is read as JSON when it parses (``on=true``,
``speed=3``, ``mode='"eco"'``) and as text otherwise (``mode=eco``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.table import Table

from edgefc.cli.client import EXIT_BAD_INPUT, ApiClient, CliExit, client_from
from edgefc.cli.output import chosen_format, console, dump, normalize, styled


def _client() -> ApiClient:
    return client_from(click.get_current_context())


def _request(method: str, path: str, **kwargs: Any) -> Any:
    """One API call; a driver's refusal exits 2 showing the driver's code and message."""
    client = _client()
    response = client.request(method, path, **kwargs)
    if response.status_code == 422:
        error = response.json().get("error", {})
        if error.get("type") == "DeviceError":
            raise CliExit(f"DeviceError {error.get('code')}: {error.get('message')}", EXIT_BAD_INPUT)
    if response.status_code >= 400:
        client.fail(response)
    return response.json()


def _pairs(items: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CliExit(f"{what} must be key=value, got {item!r}", EXIT_BAD_INPUT)
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def _body(pairs: tuple[str, ...], raw: str | None, what: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if raw is not None:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise CliExit(f"--json is not JSON: {exc}", EXIT_BAD_INPUT) from None
        if not isinstance(body, dict):
            raise CliExit("--json must be a JSON object", EXIT_BAD_INPUT)
    return {**body, **_pairs(pairs, what)}


def _params(timeout: float | None) -> dict[str, Any]:
    return {} if timeout is None else {"timeout": timeout}


def _ago(ms: int | None) -> str:
    if ms is None:
        return "never"
    seconds = max(0.0, time.time() - ms / 1000)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _short(value: Any, width: int = 24) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def _echo_json(value: Any) -> None:
    """JSON, or YAML under the global ``-o yaml``."""
    click.echo(dump(value, "yaml" if chosen_format(None) == "yaml" else "json"))


@click.group("devices")
def devices() -> None:
    """Devices: which are online, their last properties; get, set and call through their drivers."""


@devices.command("list")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="only devices with this tag (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def list_devices(tags: tuple[str, ...], as_json: bool) -> None:
    """List devices with their driver, state, last seen and last properties."""
    found: list[dict[str, Any]] = _client().json("GET", "/v1/devices")
    wanted = {k: str(v) for k, v in _pairs(tags, "--tag").items()}
    found = [d for d in found if all(d["tags"].get(k) == v for k, v in wanted.items())]
    if chosen_format(None, as_json=as_json) in ("json", "yaml"):
        _echo_json(normalize(found))  # times as RFC 3339, like every other command
        return
    table = Table(box=None, header_style="bold")
    for column in ("DEVICE", "DRIVER", "STATE", "LAST SEEN", "TAGS", "PROPERTIES"):
        table.add_column(column)
    colours = {"online": "green", "offline": "red", "unregistered": "yellow"}
    for d in found:
        state = d.get("state") or ("online" if d["online"] else "offline")
        props = ", ".join(f"{k}={_short(v.get('value'))}" for k, v in sorted(d["properties"].items()))
        tag_text = ", ".join(f"{k}={v}" for k, v in sorted(d["tags"].items()))
        table.add_row(f"/{d['product_key']}/{d['device_name']}", d["driver"], styled(state, colours.get(state, "")),
                      _ago(d.get("last_seen")), tag_text or "-", props or "-")  # fmt: skip
    console().print(table)


@devices.command("show")
@click.argument("product_key")
@click.argument("device_name")
def show(product_key: str, device_name: str) -> None:
    """Show one device as JSON."""
    _echo_json(normalize(_client().json("GET", f"/v1/devices/{product_key}/{device_name}")))


@devices.command("get")
@click.argument("product_key")
@click.argument("device_name")
@click.argument("keys", nargs=-1)
@click.option("--timeout", type=float, help="seconds the driver has to answer (default 5)")
def get(product_key: str, device_name: str, keys: tuple[str, ...], timeout: float | None) -> None:
    """Ask the driver for current property values (all it offers without KEYS)."""
    params = {**_params(timeout), **({"keys": ",".join(keys)} if keys else {})}
    _echo_json(_request("GET", f"/v1/devices/{product_key}/{device_name}/properties", params=params))


@devices.command("set")
@click.argument("product_key")
@click.argument("device_name")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--json", "raw", help="the properties as a JSON object")
@click.option("--timeout", type=float, help="seconds the driver has to answer (default 5)")
def set_(product_key: str, device_name: str, pairs: tuple[str, ...], raw: str | None, timeout: float | None) -> None:
    """Set properties through the driver; prints its answer."""
    body = _body(pairs, raw, "a property")
    if not body:
        raise CliExit("give at least one KEY=VALUE or --json", EXIT_BAD_INPUT)
    path = f"/v1/devices/{product_key}/{device_name}/properties"
    _echo_json(_request("POST", path, json=body, params=_params(timeout)))


@devices.command("call")
@click.argument("product_key")
@click.argument("device_name")
@click.argument("service")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE...]")
@click.option("--json", "raw", help="the arguments as a JSON object")
@click.option("--timeout", type=float, help="seconds the driver has to answer (default 5)")
def call(product_key: str, device_name: str, service: str, pairs: tuple[str, ...], raw: str | None,
         timeout: float | None) -> None:  # fmt: skip
    """Call SERVICE of the device with arguments; prints the driver's answer."""
    path = f"/v1/devices/{product_key}/{device_name}/services/{service}"
    _echo_json(_request("POST", path, json=_body(pairs, raw, "an argument"), params=_params(timeout)))
