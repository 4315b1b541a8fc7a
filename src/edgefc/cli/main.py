"""The ``edgefc`` command: a thin client of the gateway API (plus ``gateway run`` and ``init``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
from rich.console import Console
from rich.table import Table

from edgefc.cli.client import EXIT_BAD_INPUT, EXIT_FUNCTION_FAILED, ApiClient, CliExit, client_from
from edgefc.cli.scaffold import scaffold
from edgefc.errors import ValidationError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--gateway", envvar="EDGEFC_GATEWAY", help="gateway URL (default http://127.0.0.1:9999)")
@click.option("--token", envvar="EDGEFC_TOKEN", help="admin token (default: read from the data dir)")
@click.option("--data-dir", envvar="EDGEFC_DATA_DIR", help="gateway data dir, for the token (default ./.edgefc)")
def cli(gateway: str | None, token: str | None, data_dir: str | None) -> None:
    """edgefc: run Python functions on an edge gateway."""


@cli.group()
def gateway() -> None:
    """Run a gateway."""


@gateway.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="gateway.yaml")
@click.option("--data-dir", "data_dir", help="data dir (default ./.edgefc)")
@click.option("--listen", help="API address host:port (default 127.0.0.1:9999)")
@click.option("--isolation", type=click.Choice(["auto", "container", "process"]), help="default isolation")
@click.option("--deploy", "deploy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="apply this manifest once started")  # fmt: skip
@click.pass_context
def gateway_run(ctx: click.Context, config_path: Path | None, data_dir: str | None, listen: str | None,
                isolation: str | None, deploy_path: Path | None) -> None:  # fmt: skip
    """Start a gateway in the foreground; Ctrl-C stops it and everything it runs."""
    from edgefc.config.gateway import load_gateway_config
    from edgefc.gateway.server import run

    data_dir = data_dir or ctx.find_root().params.get("data_dir")
    try:
        config = load_gateway_config(config_path, data_dir=data_dir, listen=listen, isolation=isolation)
    except ValidationError as exc:
        raise CliExit(exc.message, EXIT_BAD_INPUT) from exc
    sys.exit(run(config, deploy=deploy_path))


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def deploy(ctx: click.Context, manifest: Path) -> None:
    """Validate MANIFEST and its code locally, upload it, and apply it on the gateway."""
    from edgefc.config.gateway import LimitsConfig
    from edgefc.gateway.deploy import Limits, bundles_from_disk

    defaults = LimitsConfig()
    try:
        text, bundles = bundles_from_disk(manifest, Limits(defaults.max_bundle_bytes, defaults.max_bundle_files))
    except ValidationError as exc:
        raise CliExit(f"{manifest} is not valid:\n  " + "\n  ".join(exc.problems), EXIT_BAD_INPUT) from exc
    files: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", text.encode(), "application/yaml"))]
    files += [(name, (f"{name}.zip", data, "application/zip")) for name, data in bundles.items()]
    client = client_from(ctx)
    with Console(stderr=True).status(f"deploying {manifest} ({len(bundles)} function(s))…"):
        response = client.request("PUT", "/v1/deployment", files=files, timeout=300)
    if response.status_code >= 400:
        _deploy_failed(client, response)
    result = response.json()
    click.echo(f"deployment {result['version']} applied")
    for key, label in (("started", "started"), ("unchanged", "unchanged"), ("removed", "removed")):
        if result.get(key):
            click.echo(f"  {label}: {', '.join(result[key])}")


def _deploy_failed(client: ApiClient, response: httpx.Response) -> NoReturn:
    """Exit 2; a function that failed to start is shown by name with its traceback, not as a raw dict."""
    try:
        error = response.json()["error"]
        details = error["details"] if error["type"] == "DeployFailed" else None
    except (ValueError, KeyError, TypeError):
        details = None
    if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
        client.fail(response)
    lines = [f"DeployFailed: {error.get('message', '')}"]
    for d in details:
        lines.append(f"  {d.get('function')}: {d.get('type')}: {d.get('message')}")
        lines += [f"    {line}" for line in "".join(d.get("stack") or []).rstrip().splitlines()]
    raise CliExit("\n".join(lines), EXIT_BAD_INPUT)


@cli.command()
@click.argument("name")
@click.option("--data", help="event payload as text")
@click.option("--file", "file_", type=click.File("rb"), help="event payload from a file ('-' for stdin)")
@click.option("--async", "is_async", is_flag=True, help="return an invocation id at once")
@click.pass_context
def invoke(ctx: click.Context, name: str, data: str | None, file_: Any, is_async: bool) -> None:
    """Invoke function NAME with an event; prints its result."""
    if data is not None and file_ is not None:
        raise CliExit("give either --data or --file, not both", EXIT_BAD_INPUT)
    payload = data.encode() if data is not None else (file_.read() if file_ is not None else b"")
    client = client_from(ctx)
    headers = {"X-Edgefc-Invocation-Type": "async" if is_async else "sync"}
    response = client.request("POST", f"/v1/functions/{name}/invoke", content=payload, headers=headers, timeout=None)
    if response.status_code >= 400:
        client.fail(response)
    if is_async:
        click.echo(response.json()["invocation_id"])
        return
    out = response.content
    sys.stdout.buffer.write(out + (b"" if out.endswith(b"\n") or not out else b"\n"))


@cli.command()
@click.argument("invocation_id")
@click.pass_context
def invocation(ctx: click.Context, invocation_id: str) -> None:
    """Show an async invocation (state, result or error)."""
    found = client_from(ctx).json("GET", f"/v1/invocations/{invocation_id}")
    click.echo(json.dumps(found, indent=2))
    if found.get("state") == "failed":
        sys.exit(EXIT_FUNCTION_FAILED)


def _fmt_ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print the raw status")
@click.pass_context
def ps(ctx: click.Context, as_json: bool) -> None:
    """List deployed functions with their state, instances and figures."""
    functions = client_from(ctx).json("GET", "/v1/functions")
    if as_json:
        click.echo(json.dumps(functions, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "MODE", "STATE", "ISOLATION", "INST", "VERSION", "CALLS", "ERRORS", "P50 MS", "P99 MS", "RESTARTS", "LAST EXIT"):
        table.add_column(col)
    colours = {"running": "green", "idle": "cyan", "backoff": "yellow", "failed": "red", "starting": "blue"}
    for f in functions:
        last = f.get("last_exit") or {}
        duration = f.get("duration_ms") or {}
        state = f["state"]
        table.add_row(
            f["name"], f["mode"], f"[{colours.get(state, 'white')}]{state}[/]", f.get("isolation", "-"),
            str(len(f.get("instances", []))), str(f.get("version", "-")), str(f.get("invocations", 0)),
            str(f.get("errors", 0)), _fmt_ms(duration.get("p50")), _fmt_ms(duration.get("p99")), str(f.get("restarts", 0)),
            f"{last.get('reason')} ({last.get('code')})" if last else "-",
        )  # fmt: skip
    # Piped (a script, `| grep`), rich would squeeze the table into 80 columns and cut names: print it whole.
    console = Console()
    if not console.is_terminal:
        console = Console(width=10_000)
    console.print(table)


@cli.command()
@click.pass_context
def rollback(ctx: click.Context) -> None:
    """Go back to the previously applied deployment."""
    result = client_from(ctx).json("POST", "/v1/deployment/rollback", timeout=300)
    click.echo(f"rolled back: deployment {result['version']} applied")


@cli.command()
@click.pass_context
def deployment(ctx: click.Context) -> None:
    """Show the applied deployment."""
    click.echo(json.dumps(client_from(ctx).json("GET", "/v1/deployment"), indent=2))


@cli.command()
@click.argument("name")
@click.pass_context
def restart(ctx: click.Context, name: str) -> None:
    """Restart a function's instances (clears a failed state)."""
    status = client_from(ctx).json("POST", f"/v1/functions/{name}/restart", timeout=120)
    click.echo(f"{name}: {status['state']}")


@cli.command()
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              help="project folder holding functions/ and deployment.yaml")  # fmt: skip
@click.option("--mode", type=click.Choice(["on_demand", "continuous"]), default="on_demand")
def init(name: str, directory: Path, mode: str) -> None:
    """Scaffold functions/NAME/index.py and add it to deployment.yaml."""
    try:
        created = scaffold(directory, name, mode)
    except ValidationError as exc:
        raise CliExit("\n".join(exc.problems), EXIT_BAD_INPUT) from exc
    for path in created:
        click.echo(f"wrote {path}")
    click.echo(f"next: edgefc deploy {directory / 'deployment.yaml'} && edgefc invoke {name} --data '{{\"name\":\"edge\"}}'")


def _register() -> None:
    """Commands defined in their own modules of the CLI."""
    from edgefc.cli import devices, logs, publish, queues, top

    for command in (logs.logs, top.top, publish.publish, queues.queues, queues.deadletters, devices.devices):
        cli.add_command(command)
    from edgefc.cli.cloud import cloud  # the cloud control plane (issue 11)

    cli.add_command(cloud)


_register()


def main() -> None:
    cli(prog_name="edgefc")
