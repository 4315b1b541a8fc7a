"""``edgefc deploy MANIFEST``: package, compare with what runs, ask before removing anything, apply.

A deployment is the whole desired state, so a manifest that lacks a function removes it. That is easy to do by
accident (deploying a fresh ``edgefc init`` project onto a gateway running something else), so a deploy that
removes anything shows the diff and asks; without a terminal to ask on it refuses unless given ``--yes``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import httpx

from edgefc.cli.client import EXIT_BAD_INPUT, ApiClient, CliExit, client_from, render_error
from edgefc.cli.output import chosen_format, console, emit, output_option
from edgefc.errors import ValidationError

if TYPE_CHECKING:
    from edgefc.cli.bundles import Package
    from edgefc.cli.diff import Diff
    from edgefc.config.manifest import Manifest


@click.command("deploy")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-y", "--yes", is_flag=True, help="apply even if it removes functions, routes or devices")
@click.option("--dry-run", is_flag=True, help="only show what would change; apply nothing")
@output_option
def deploy(manifest: Path, yes: bool, dry_run: bool, output: str | None) -> None:
    """Validate MANIFEST and its code, show what changes, and apply it on the gateway.

    A deployment that removes a function, route or device is shown first and asks for confirmation (refused
    without a terminal unless --yes). Exits 2 for invalid input, 3 when the gateway cannot be reached.
    """
    # The manifest machinery (pydantic models, croniter, pip) is loaded only by the commands that use it.
    from edgefc.cli.bundles import package
    from edgefc.config.gateway import LimitsConfig
    from edgefc.config.yamltext import load_yaml

    defaults = LimitsConfig()
    try:
        built = package(manifest, max_bytes=defaults.max_bundle_bytes, max_files=defaults.max_bundle_files)
    except ValidationError as exc:
        raise CliExit(render_error(exc.to_dict()), EXIT_BAD_INPUT) from exc
    client = client_from(click.get_current_context())
    changes = _diff_against_current(client, built)
    err = console(stderr=True)
    if dry_run:
        emit(changes.as_dict(), chosen_format(output), lambda _data, _wide: changes.render())
        return
    if changes.removes_anything and not yes:
        err.print(changes.render())
        _confirm_removal(changes)
    labels = load_yaml(built.text, source=str(manifest))
    files: list[tuple[str, Any]] = [("manifest", ("deployment.yaml", built.text.encode(), "application/yaml"))]
    files += [(name, (f"{name}.zip", data, "application/zip")) for name, data in built.bundles.items()]
    with err.status(f"deploying {manifest} ({len(built.bundles)} function(s))…"):
        response = client.request("PUT", "/v1/deployment", files=files, timeout=300)
    if response.status_code >= 400:
        _deploy_failed(client, response, labels)
    result = response.json()
    click.echo(f"deployment {result['version']} applied")
    for key in ("started", "unchanged", "removed"):
        if result.get(key):
            click.echo(f"  {key}: {', '.join(result[key])}")


def _diff_against_current(client: ApiClient, built: Package) -> Diff:
    """The diff to the applied deployment. Raises CliExit(2) when the version name is taken by other content."""
    from edgefc.cli.diff import diff, sha256
    from edgefc.config.load import parse_manifest

    current = client.json("GET", "/v1/deployment")
    old: Manifest | None = None
    if current.get("manifest"):
        try:
            old = parse_manifest(current["manifest"])
        except ValidationError:
            old = None  # written by an older gateway; everything shows as new
    old_bundles: dict[str, str] = current.get("bundles") or {}
    new_bundles = {name: sha256(data) for name, data in built.bundles.items()}
    version = built.manifest.version
    if version is not None and version == current.get("version"):
        # Same desired state and code; a changed comment or layout is not a different deployment.
        same = old is not None and old == built.manifest and old_bundles == new_bundles
        if not same:
            raise CliExit(f"ValidationError: version {version!r} is already deployed with different content; "
                          "give this deployment a new version (or leave version out to have one made from "
                          "the content)", EXIT_BAD_INPUT)  # fmt: skip
    return diff(old, old_bundles, built.manifest, new_bundles, old_version=current.get("version"))


def _confirm_removal(changes: Diff) -> None:
    """Ask on the terminal; without one, refuse (exit 2) naming --yes and --dry-run."""
    what = changes.removed_summary()
    if not sys.stdin.isatty():
        raise CliExit(f"NotConfirmed: this deployment removes {what}; nothing was changed. Run it again with --yes to "
                      "apply it, or --dry-run to only see the changes", EXIT_BAD_INPUT)  # fmt: skip
    if not click.confirm(f"This removes {what}. Apply it?", default=False, err=True):
        raise CliExit("NotConfirmed: not applied; nothing was changed", EXIT_BAD_INPUT)


def _deploy_failed(client: ApiClient, response: httpx.Response, labels: Any) -> NoReturn:
    """Exit 2; a function that failed to start is shown by name with its traceback, not as a raw dict."""
    try:
        error = response.json()["error"]
        details = error["details"] if error["type"] == "DeployFailed" else None
    except (ValueError, KeyError, TypeError):
        details = None
    if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
        client.fail(response, labels=labels)
    lines = [f"DeployFailed: {error.get('message', '')}"]
    for d in details:
        lines.append(f"  {d.get('function')}: {d.get('type')}: {d.get('message')}")
        lines += [f"    {line}" for line in "".join(d.get("stack") or []).rstrip().splitlines()]
    raise CliExit("\n".join(lines), EXIT_BAD_INPUT)
