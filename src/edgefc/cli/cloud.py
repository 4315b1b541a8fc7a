"""``edgefc cloud …``: run the cloud (``serve``) and drive it (a thin client of its ``/v1`` API)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

from edgefc.cli.client import EXIT_BAD_INPUT, EXIT_FUNCTION_FAILED, ApiClient, CliExit
from edgefc.errors import ValidationError

DEFAULT_CLOUD = "http://127.0.0.1:8800"
DEFAULT_DATA_DIR = "./.edgefc-cloud"
FINAL = ("succeeded", "failed", "rolled_back")
_COLOURS = {"succeeded": "green", "failed": "red", "rolled_back": "red", "pending": "yellow",
            "downloading": "blue", "applying": "blue"}  # fmt: skip


@click.group()
@click.option("--cloud", "cloud_url", envvar="EDGEFC_CLOUD", help=f"cloud URL (default {DEFAULT_CLOUD})")
@click.option("--cloud-token", envvar="EDGEFC_CLOUD_TOKEN", help="admin token (default: read from the cloud data dir)")
@click.option("--cloud-data-dir", envvar="EDGEFC_CLOUD_DATA_DIR", help=f"cloud data dir, for the token ({DEFAULT_DATA_DIR})")
@click.pass_context
def cloud(ctx: click.Context, cloud_url: str | None, cloud_token: str | None, cloud_data_dir: str | None) -> None:
    """The cloud control plane: code versions, edge instances, deployments."""
    ctx.ensure_object(dict)
    ctx.obj.update(url=cloud_url or DEFAULT_CLOUD, token=cloud_token, data_dir=cloud_data_dir or DEFAULT_DATA_DIR)


def _opts(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.find_object(dict)
    assert obj is not None, "the cloud group puts its options on the context"
    return obj


def _client(ctx: click.Context) -> ApiClient:
    obj = _opts(ctx)
    if "client" not in obj:
        token = obj["token"]
        if not token:
            try:
                token = (Path(obj["data_dir"]) / "admin.token").read_text().strip()
            except OSError:
                token = None
        obj["client"] = ApiClient(obj["url"], token)
        ctx.call_on_close(obj["client"].http.close)
    return obj["client"]  # type: ignore[no-any-return]


def _print_table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["-" if v is None else str(v) for v in row])
    console = Console() if sys.stdout.isatty() else Console(width=10_000)
    console.print(table)


@cloud.command("serve")
@click.option("--db", help="database URL (default SQLite in the data dir; postgresql://user@host/db)")
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, help="admin token, SQLite database")
@click.option("--listen", default="127.0.0.1:8800", show_default=True, help="host:port")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="serve HTTPS")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="key of --tls-cert")
def serve(db: str | None, data_dir: str, listen: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Run the cloud in the foreground (Ctrl-C stops it)."""
    from edgefc.cloud.server import CloudOptions, run
    from edgefc.config.gateway import split_host_port

    if (tls_cert is None) != (tls_key is None):
        raise CliExit("--tls-cert and --tls-key go together", EXIT_BAD_INPUT)
    try:
        split_host_port(listen)
    except ValueError as exc:
        raise CliExit(f"--listen: {exc}", EXIT_BAD_INPUT) from exc
    sys.exit(run(CloudOptions(Path(data_dir), db, listen, tls_cert, tls_key)))


# ---- functions -----------------------------------------------------------------------------------------------


@cloud.group()
def function() -> None:
    """Functions and their code versions."""


@function.command("create")
@click.argument("name")
@click.option("--handler", default="index.handler", show_default=True)
@click.option("--runtime", default="python3", show_default=True)
@click.option("--initializer")
@click.pass_context
def function_create(ctx: click.Context, name: str, handler: str, runtime: str, initializer: str | None) -> None:
    """Create function NAME."""
    body = {"name": name, "handler": handler, "runtime": runtime, "initializer": initializer}
    made = _client(ctx).json("POST", "/v1/functions", json={k: v for k, v in body.items() if v is not None})
    click.echo(f"function {made['name']} created ({made['runtime']}, {made['handler']})")


@function.command("upload")
@click.argument("name")
@click.argument("code", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def function_upload(ctx: click.Context, name: str, code: Path) -> None:
    """Upload CODE (a directory or a .zip) as the next version of NAME."""
    from edgefc.cloud.validate import MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES
    from edgefc.package import zip_directory

    try:
        data = (zip_directory(code, max_bytes=MAX_BUNDLE_BYTES, max_files=MAX_BUNDLE_FILES, label=str(code))
                if code.is_dir() else code.read_bytes())  # fmt: skip
    except ValidationError as exc:
        raise CliExit("\n".join(exc.problems), EXIT_BAD_INPUT) from exc
    made = _client(ctx).json("POST", f"/v1/functions/{name}/versions", content=data,
                             headers={"Content-Type": "application/zip"}, timeout=300)  # fmt: skip
    click.echo(f"{name} version {made['number']} (sha256 {made['sha256'][:12]}, {made['size']} bytes)")


@function.command("list")
@click.pass_context
def function_list(ctx: click.Context) -> None:
    """List functions."""
    rows = _client(ctx).json("GET", "/v1/functions")
    _print_table(["NAME", "RUNTIME", "HANDLER", "LATEST", "CREATED"],
                 [[f["name"], f["runtime"], f["handler"], f["latest_version"], f["created_at"]] for f in rows])  # fmt: skip


@function.command("versions")
@click.argument("name")
@click.pass_context
def function_versions(ctx: click.Context, name: str) -> None:
    """List the versions of NAME."""
    rows = _client(ctx).json("GET", f"/v1/functions/{name}/versions")
    _print_table(["VERSION", "SHA256", "SIZE", "CREATED"],
                 [[v["number"], v["sha256"][:16], v["size"], v["created_at"]] for v in rows])  # fmt: skip


# ---- instances, assignments, routes, devices -----------------------------------------------------------------


@cloud.group()
def instance() -> None:
    """Edge instances (one per gateway)."""


@instance.command("create")
@click.argument("name")
@click.pass_context
def instance_create(ctx: click.Context, name: str) -> None:
    """Create an instance; prints its id and token (shown only now) for the gateway's gateway.yaml."""
    made = _client(ctx).json("POST", "/v1/instances", json={"name": name})
    click.echo(f"instance {made['id']} ({name}) created\ntoken: {made['token']}\n"
               f"in gateway.yaml:\n  cloud:\n    url: {_opts(ctx)['url']}\n"
               f"    gateway_id: {made['id']}\n    token_file: /etc/edgefc/cloud.token   # holding the token")  # fmt: skip


@instance.command("list")
@click.pass_context
def instance_list(ctx: click.Context) -> None:
    """List instances and whether their gateways are online."""
    rows = _client(ctx).json("GET", "/v1/instances")
    _print_table(["ID", "NAME", "ONLINE", "LAST SEEN"],
                 [[i["id"], i["name"], "yes" if i["online"] else "no", i["last_seen"]] for i in rows])  # fmt: skip


@instance.command("token")
@click.argument("instance_id")
@click.pass_context
def instance_token(ctx: click.Context, instance_id: str) -> None:
    """Rotate the instance's token; the old one is refused from now on."""
    made = _client(ctx).json("POST", f"/v1/instances/{instance_id}/token")
    click.echo(f"new token of {instance_id}: {made['token']}")


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CliExit(f"--set {text!r}: write key=value (e.g. memory_mb=256, env={{A: b}})", EXIT_BAD_INPUT)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise CliExit(f"--set {key}: the value is not YAML: {exc}", EXIT_BAD_INPUT) from exc


@cloud.command("assign")
@click.argument("instance_id")
@click.argument("function_name")
@click.option("--version", "version", type=int, required=True, help="the function version to run")
@click.option("--set", "settings", multiple=True, help="a manifest setting, key=value (repeatable)")
@click.option("--file", "file_", type=click.File("r"), help="settings as a YAML mapping")
@click.pass_context
def assign(ctx: click.Context, instance_id: str, function_name: str, version: int, settings: tuple[str, ...],
           file_: Any) -> None:  # fmt: skip
    """Assign VERSION of FUNCTION to INSTANCE with manifest settings (mode, memory_mb, schedule, env, …)."""
    body: dict[str, Any] = dict(yaml.safe_load(file_) or {}) if file_ else {}
    body.update(_setting(s) for s in settings)
    body["version"] = version
    made = _client(ctx).json("PUT", f"/v1/instances/{instance_id}/assignments/{function_name}", json=body)
    extra = ", ".join(f"{k}={v}" for k, v in made.items() if k not in ("function", "version"))
    click.echo(f"{function_name} version {made['version']} assigned to {instance_id}" + (f" ({extra})" if extra else ""))


def _list_command(key: str) -> click.Group:
    @click.group(name=key[:-1], help=f"The {key} of an instance.")
    def group() -> None:
        pass

    @group.command("set", help=f"Replace the {key} of INSTANCE with FILE (YAML: a list as in the manifest).")
    @click.argument("instance_id")
    @click.argument("file_", metavar="FILE", type=click.File("r"))
    @click.pass_context
    def set_(ctx: click.Context, instance_id: str, file_: Any) -> None:
        try:
            data = yaml.safe_load(file_)
        except yaml.YAMLError as exc:
            raise CliExit(f"{file_.name}: not YAML: {exc}", EXIT_BAD_INPUT) from exc
        if isinstance(data, dict) and key in data:
            data = data[key]
        made = _client(ctx).json("PUT", f"/v1/instances/{instance_id}/{key}", json=data)
        click.echo(f"{len(made)} {key} set on {instance_id}")

    return group


cloud.add_command(_list_command("routes"))
cloud.add_command(_list_command("devices"))


# ---- deploy, status, logs ------------------------------------------------------------------------------------


@cloud.command("deploy")
@click.argument("instance_id")
@click.option("--no-wait", is_flag=True, help="return once the deployment is made")
@click.pass_context
def deploy(ctx: click.Context, instance_id: str, no_wait: bool) -> None:
    """Deploy INSTANCE's assignments and follow the gateway until it finished (exit 1 unless it succeeded)."""
    client = _client(ctx)
    made = client.json("POST", f"/v1/instances/{instance_id}/deployments")
    number = made["number"]
    click.echo(f"deployment {number} of {instance_id} made")
    if no_wait:
        return
    console = Console(stderr=True)
    last: dict[str, Any] = made
    shown = 0
    with console.status(f"deployment {number}: pending") as spinner:
        for line in client.stream_lines(f"/v1/instances/{instance_id}/events", params={"deployment": number}):
            if not line.startswith("data: "):
                continue
            state = json.loads(line[6:])
            last = state.get("deployment") or last
            for stage in last.get("stages", [])[shown:]:
                colour = _COLOURS.get(stage["stage"], "white")
                console.print(f"  {stage['at']}  [{colour}]{stage['stage']:<12}[/] {stage['message']}")
            shown = len(last.get("stages", []))
            online = "online" if state.get("online") else "offline: it gets the deployment when it returns"
            spinner.update(f"deployment {number}: {last['status']} (gateway {online})")
            if last["status"] in FINAL:
                break
    if last["status"] != "succeeded":
        message = f"deployment {number} {last['status']}: {last['message']}"
        if last.get("traceback"):
            message += "\n" + last["traceback"].rstrip()
        raise CliExit(message, EXIT_FUNCTION_FAILED)
    click.echo(f"deployment {number} succeeded: {last['message']}")


@cloud.command("status")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="print the raw status")
@click.pass_context
def status(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """The gateway's last reported function status and host figures."""
    found = _client(ctx).json("GET", f"/v1/instances/{instance_id}/status")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    host = found.get("host") or {}
    skew = found.get("clock_skew_s")
    click.echo(f"{instance_id}: {'online' if found['online'] else 'offline'}, reported {found['reported_at'] or 'never'}"
               + (f", clock {skew:+.0f} s off" if skew is not None and abs(skew) > 60 else ""))  # fmt: skip
    if host:
        click.echo(f"host: cpu {host.get('cpu_percent')} %, memory {host.get('memory_bytes')} of "
                   f"{host.get('memory_total_bytes')} bytes")  # fmt: skip
    _print_table(["NAME", "MODE", "STATE", "VERSION", "INST", "CALLS", "ERRORS", "RESTARTS"],
                 [[f.get("name"), f.get("mode"), f.get("state"), f.get("version"), f.get("instances"),
                   f.get("invocations"), f.get("errors"), f.get("restarts")] for f in found.get("functions", [])])  # fmt: skip


@cloud.command("logs")
@click.argument("instance_id")
@click.argument("function_name")
@click.option("--since", help="RFC 3339 or relative (10m, 2h)")
@click.option("--until")
@click.option("--level", help="minimum level")
@click.option("--grep", "q", help="text to find")
@click.option("--request-id")
@click.option("--limit", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def logs(ctx: click.Context, instance_id: str, function_name: str, as_json: bool, **params: Any) -> None:
    """Query a gateway's log lines of FUNCTION, answered live by the gateway (it must be online)."""
    query = {"function": function_name, **{k: str(v) for k, v in params.items() if v is not None}}
    found = _client(ctx).json("GET", f"/v1/instances/{instance_id}/logs", params=query, timeout=30)
    entries = found.get("entries", [])
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in reversed(entries) if query.get("order", "desc") == "desc" else entries:
        click.echo(f"{entry['time']} {entry['level']:<7} {entry.get('request_id') or '-':<12} {entry['message']}")


