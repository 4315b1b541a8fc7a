"""``edgefc login | logout | gateways | use``: named gateways with their tokens, like ``faas-cli login``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgefc.cli.client import EXIT_BAD_INPUT, ApiClient, CliExit, read_token, render_error
from edgefc.cli.contexts import Gateway, GatewayBook
from edgefc.cli.output import Column, chosen_format, emit, fit_table, output_option
from edgefc.errors import ValidationError


def _book() -> GatewayBook:
    try:
        return GatewayBook()
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc


@click.command("login")
@click.argument("url")
@click.option("--name", help="what to call it (default: its host)")
@click.option("--token-stdin", is_flag=True, help="read the token from stdin (a pipe, so it stays out of history)")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="read the token from a file, e.g. <data dir>/admin.token")  # fmt: skip
@click.pass_context
def login(ctx: click.Context, url: str, name: str | None, token_stdin: bool, token_file: Path | None) -> None:
    """Store gateway URL and its token under a name, check them, and make it the current gateway.

    The token comes from --token-stdin, --token-file, the global --token, else a prompt. Stored in
    $XDG_CONFIG_HOME/edgefc/gateways.yaml (mode 0600). Exits 2 for a wrong token, 3 when unreachable.
    """
    if "://" not in url:
        raise CliExit(f"URL: {url!r} must start with http:// or https://", EXIT_BAD_INPUT)
    token = ctx.find_root().params.get("token")
    if token_stdin:
        token = sys.stdin.readline()
    elif token_file is not None:
        try:
            token = token_file.read_text()
        except OSError as exc:
            raise CliExit(f"--token-file: cannot read {token_file}: {exc.strerror}", EXIT_BAD_INPUT) from exc
    elif not token and sys.stdin.isatty():
        token = click.prompt("token", hide_input=True, err=True)
    token = (token or read_token(ctx.find_root().params.get("data_dir")) or "").strip()
    if not token:
        raise CliExit("no token: give --token-stdin, --token-file or --token", EXIT_BAD_INPUT)
    client = ApiClient(url, token)
    try:
        client.json("GET", "/v1/deployment")  # any authenticated call proves URL and token
    finally:
        client.http.close()
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    chosen = name or host.replace(":", "-").replace("[", "").replace("]", "")
    book = _book()
    try:
        book.put(Gateway(chosen, url.rstrip("/"), token))
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    click.echo(f"logged in to {url} as {chosen!r} (now the current gateway; stored in {book.path})")


@click.command("logout")
@click.argument("name")
def logout(name: str) -> None:
    """Forget the stored gateway NAME and its token."""
    book = _book()
    try:
        book.remove(name)
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    click.echo(f"forgot {name!r}")


@click.command("gateways")
@output_option
def gateways(output: str | None) -> None:
    """List stored gateways (tokens are never shown); * marks the current one."""
    book = _book()
    data = [{"name": g.name, "url": g.url, "current": g.name == book.current} for g in book.gateways.values()]
    columns = [Column(""), Column("NAME", keep=True), Column("URL", keep=True)]
    emit(data, chosen_format(output),
         lambda rows, wide: fit_table(columns, [["*" if r["current"] else "", r["name"], r["url"]] for r in rows],
                                      wide=wide))  # fmt: skip


@click.command("use")
@click.argument("name")
def use(name: str) -> None:
    """Make the stored gateway NAME the one commands talk to."""
    book = _book()
    try:
        book.use(name)
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    click.echo(f"now using {name!r}")
