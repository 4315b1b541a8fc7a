"""The ``edgefc`` command: a thin client of the gateway API (plus ``gateway run`` and ``init``)."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from edgefc import __version__
from edgefc.cli.client import EXIT_BAD_INPUT, EXIT_FUNCTION_FAILED, CliExit, client_from, render_error
from edgefc.cli.contexts import complete_gateway
from edgefc.cli.output import FORMATS, chosen_format, dump, echo_err, normalize, output_option
from edgefc.cli.scaffold import next_step, scaffold
from edgefc.cli.templates import PYTHON as PYTHON_TEMPLATES
from edgefc.cli.templates import RUNTIMES
from edgefc.errors import ValidationError


class _LazyGroup(click.Group):
    """A group whose commands from other modules are imported on first look-up (:func:`_register`), so that
    ``edgefc gateway run`` loads no HTTP client or table library into the long-running gateway process."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in ("gateway", "run"):
            _register()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register()
        return super().list_commands(ctx)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="edgefc", message="%(prog)s %(version)s")
@click.option("--gateway", envvar="EDGEFC_GATEWAY", shell_complete=complete_gateway,
              help="gateway URL, or a name stored by 'edgefc login' (default: the current one, "
                   "else http://127.0.0.1:9999)")  # fmt: skip
@click.option("--token", envvar="EDGEFC_TOKEN", help="admin token (default: the stored one, else the data dir's)")
@click.option("--data-dir", envvar="EDGEFC_DATA_DIR", help="gateway data dir, for the token (default ./.edgefc)")
@click.option("-o", "--output", type=click.Choice(FORMATS), help="output format of every command that shows data")
def cli(gateway: str | None, token: str | None, data_dir: str | None, output: str | None) -> None:
    """edgefc: run Python functions on an edge gateway.

    Shell completion: eval "$(_EDGEFC_COMPLETE=bash_source edgefc)" (zsh_source, fish_source for other shells).
    """


@cli.group(cls=_LazyGroup)
def gateway() -> None:
    """Run a gateway."""


@gateway.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="gateway.yaml")
@click.option("--data-dir", "data_dir", help="data dir (default ./.edgefc)")
@click.option("--listen", help="API address host:port (default 127.0.0.1:9999)")
@click.option("--isolation", type=click.Choice(["auto", "container", "process"]), help="default isolation")
@click.option("--deploy", "deploy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="apply this manifest once started")  # fmt: skip
@click.option("--if-empty", is_flag=True,
              help="with --deploy: only when the data dir has never had a deployment (a restart keeps yours)")
@click.pass_context
def gateway_run(ctx: click.Context, config_path: Path | None, data_dir: str | None, listen: str | None,
                isolation: str | None, deploy_path: Path | None, if_empty: bool) -> None:  # fmt: skip
    """Start a gateway in the foreground; Ctrl-C stops it and everything it runs."""
    from edgefc.config.gateway import load_gateway_config
    from edgefc.gateway.server import run

    data_dir = data_dir or ctx.find_root().params.get("data_dir")
    try:
        config = load_gateway_config(config_path, data_dir=data_dir, listen=listen, isolation=isolation)
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    if deploy_path is not None and if_empty and has_deployed(Path(config.data_dir)):
        echo_err(f"keeping the deployment in {config.data_dir} (not applying {deploy_path}; "
                 f"to start again from it: stop the gateway, remove {config.data_dir}, start it again)")
        deploy_path = None
    sys.exit(run(config, deploy=deploy_path))


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
@output_option
@click.pass_context
def invocation(ctx: click.Context, invocation_id: str, output: str | None) -> None:
    """Show an async invocation: state, times, and its result (as text when it is text, else base64) or error."""
    found = client_from(ctx).json("GET", f"/v1/invocations/{invocation_id}")
    fmt = chosen_format(output)
    click.echo(dump(normalize(found), "yaml" if fmt == "yaml" else "json"))
    if found.get("state") == "failed":
        sys.exit(EXIT_FUNCTION_FAILED)


@cli.command()
@click.pass_context
def rollback(ctx: click.Context) -> None:
    """Go back to the previously applied deployment."""
    result = client_from(ctx).json("POST", "/v1/deployment/rollback", timeout=300)
    click.echo(f"rolled back: deployment {result['version']} applied")


@cli.command()
@output_option
@click.pass_context
def deployment(ctx: click.Context, output: str | None) -> None:
    """Show the applied deployment: version, manifest, apply status, previous version."""
    fmt = chosen_format(output)
    click.echo(dump(normalize(client_from(ctx).json("GET", "/v1/deployment")), "yaml" if fmt == "yaml" else "json"))


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
@click.option("-t", "--template", type=click.Choice(list(PYTHON_TEMPLATES)), default=None,
              help="what kind of function (default on-demand)")  # fmt: skip
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="python3", show_default=True,
              help="the language of the function")  # fmt: skip
@click.option("--mode", type=click.Choice(["on_demand", "continuous"]), default=None,
              help="same as --template on-demand or continuous")  # fmt: skip
def init(name: str, directory: Path, template: str | None, runtime: str, mode: str | None) -> None:
    """Make functions/NAME from a template and add it to deployment.yaml, keeping the file's own text
    (comments, quoting, order) as it is.
    """
    chosen = template or (mode.replace("_", "-") if mode else "on-demand")
    try:
        created = scaffold(directory, name, chosen, runtime)
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    for path in created:
        click.echo(f"wrote {path}")
    click.echo(f"next: edgefc deploy {directory / 'deployment.yaml'} && {next_step(name, chosen, runtime)}")


def has_deployed(data_dir: Path) -> bool:
    """Whether the gateway data dir has ever had a deployment (read-only; a missing store means no)."""
    db = data_dir / "state.db"
    if not db.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute("SELECT 1 FROM deployments LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return True  # unreadable: never replace what might be the user's deployment


_registered = False


def _register() -> None:
    """Commands defined in their own modules of the CLI (once)."""
    global _registered
    if _registered:
        return
    _registered = True
    from edgefc.cli import deploy, devices, login, logs, publish, queues, service, status, top

    for command in (deploy.deploy, status.ps, status.describe, logs.logs, top.top, publish.publish, queues.queues,
                    queues.deadletters, devices.devices, login.login, login.logout, login.gateways, login.use):
        cli.add_command(command)
    gateway.add_command(service.install_service)
    from edgefc.cli.cloud import cloud  # the cloud control plane (issue 11)

    cli.add_command(cloud)


def main() -> None:
    cli(prog_name="edgefc")
