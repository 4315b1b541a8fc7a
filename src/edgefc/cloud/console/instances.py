"""Instance pages: the list, create (token shown once), rotate, assignments, routes, devices, deploy."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgefc.cloud.console import live, settings
from edgefc.cloud.console.render import SECURITY_HEADERS
from edgefc.cloud.console.session import Session
from edgefc.cloud.console.web import Console, problem_flash, redirect, shows_errors
from edgefc.config.yamltext import load_yaml
from edgefc.errors import EdgefcError, ValidationError

STAGES = ("pending", "downloading", "applying", "succeeded")
HISTORY_SHOWN = 10


def _yaml(items: Any) -> str:
    return yaml.safe_dump(items, sort_keys=False, allow_unicode=True) if items else ""


def routes(console: Console) -> APIRouter:
    """Everything under ``/console/instances``."""
    router = APIRouter(prefix="/console/instances", include_in_schema=False)
    service = console.service
    fleet, catalog, deployments = service.fleet, service.catalog, service.deployments
    guard = shows_errors(console)

    async def list_page(request: Request, session: Session, *, status: int = 200, name: str = "",
                        errors: dict[str, list[str]] | None = None) -> Response:
        instances = await fleet.list_instances()
        return console.page(request, "instances.html", session, status=status, instances=instances,
                            values={"name": name}, errors=errors or {})

    @router.get("")
    @guard
    async def index(request: Request) -> Response:
        return await list_page(request, console.viewer(request))

    @router.post("")
    @guard
    async def create(request: Request) -> Response:
        session, form = await console.form(request)
        name = str(form.get("name") or "").strip()
        try:
            created = await fleet.create_instance({"name": name})
        except ValidationError as exc:
            return await list_page(request, session, status=422, name=name,
                                   errors=settings.errors_from_problems(exc.problems) | _named(exc))
        # Rendered here rather than redirected to, so the token never travels in a URL or a cookie.
        return await detail_page(request, session, created["id"], token=created["token"], status=201)

    def _named(exc: ValidationError) -> dict[str, list[str]]:
        return {"name": [p.partition(": ")[2] or p for p in exc.problems if p.startswith("name")]}

    async def detail_page(request: Request, session: Session, instance_id: str, *, token: str | None = None,
                          status: int = 200, errors: dict[str, list[str]] | None = None,
                          texts: dict[str, str] | None = None, flash: dict[str, Any] | None = None) -> Response:
        instance = await fleet.get_instance(instance_id)
        functions = await catalog.list_functions()
        history = await deployments.list(instance_id)
        gateway = await service.gateways.status(instance_id)
        texts = {"routes": _yaml(instance["routes"]), "devices": _yaml(instance["devices"]), **(texts or {})}
        return console.page(request, "instance.html", session, status=status, instance=instance, token=token,
                            functions=functions, errors=errors or {}, texts=texts, flash=flash,
                            deploy=deploy_view(history), gateway=gateway)

    @router.get("/{instance_id}")
    @guard
    async def detail(request: Request, instance_id: str) -> Response:
        return await detail_page(request, console.viewer(request), instance_id)

    @router.post("/{instance_id}/token")
    @guard
    async def rotate(request: Request, instance_id: str) -> Response:
        session, _ = await console.form(request)
        rotated = await fleet.rotate_token(instance_id)
        return await detail_page(request, session, instance_id, token=rotated["token"])

    @router.post("/{instance_id}/delete")
    @guard
    async def delete(request: Request, instance_id: str) -> Response:
        await console.form(request)
        await fleet.delete_instance(instance_id)
        return redirect("/console/instances", request=request, flash=f"Deleted instance {instance_id}.")

    @router.post("/{instance_id}/routes")
    @guard
    async def set_routes(request: Request, instance_id: str) -> Response:
        return await set_list(request, instance_id, "routes")

    @router.post("/{instance_id}/devices")
    @guard
    async def set_devices(request: Request, instance_id: str) -> Response:
        return await set_list(request, instance_id, "devices")

    async def set_list(request: Request, instance_id: str, key: str) -> Response:
        session, form = await console.form(request)
        text = str(form.get(key) or "")
        try:
            items = load_yaml(text, source=key) if text.strip() else []
            await fleet.set_list(instance_id, key, [] if items is None else items)
        except ValueError as exc:  # YAML syntax, and ValidationError (from the cloud's check) is not one
            return await detail_page(request, session, instance_id, status=422, errors={key: [str(exc)]},
                                     texts={key: text})
        except ValidationError as exc:
            return await detail_page(request, session, instance_id, status=422, errors={key: exc.problems},
                                     texts={key: text})
        return redirect(f"/console/instances/{instance_id}#{key}", request=request, flash=f"Saved {key}.")

    @router.post("/{instance_id}/deploy")
    @guard
    async def deploy(request: Request, instance_id: str) -> Response:
        session, _ = await console.form(request)
        try:
            made = await deployments.deploy(instance_id)
        except EdgefcError as exc:
            return await detail_page(request, session, instance_id, status=exc.http_status,
                                     flash=problem_flash(exc))
        return redirect(f"/console/instances/{instance_id}#deployments", request=request,
                        flash=f"Deployment {made['number']} started.")

    @router.post("/{instance_id}/deployments/{number}/rollback")
    @guard
    async def rollback(request: Request, instance_id: str, number: int) -> Response:
        session, _ = await console.form(request)
        try:
            made = await deployments.rollback(instance_id, number)
        except EdgefcError as exc:
            return await detail_page(request, session, instance_id, status=exc.http_status,
                                     flash=problem_flash(exc))
        return redirect(f"/console/instances/{instance_id}#deployments", request=request,
                        flash=f"Rolling back to deployment {number} as deployment {made['number']}.")

    @router.get("/{instance_id}/deployments/stream")
    async def deployments_stream(request: Request, instance_id: str) -> Response:
        csrf = console.keys.csrf(console.viewer(request))
        instance = await fleet.get_instance(instance_id)  # NotFound before the stream starts

        async def render() -> str:
            history = await deployments.list(instance_id)
            gateway = await service.gateways.status(instance_id)
            return console.renderer.fragment("_deployments.html", instance=instance, csrf=csrf,
                                             deploy=deploy_view(history), gateway=gateway)

        return live.fragments(request, service.notifier, instance_id, render)

    # assignments

    async def assign_page(request: Request, session: Session, instance_id: str, function: str, *,
                          values: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None,
                          status: int = 200) -> Response:
        instance = await fleet.get_instance(instance_id)
        record = await catalog.get_function(function)
        versions = await catalog.list_versions(function)
        current = next((a for a in instance["assignments"] if a["function"] == function), None)
        if values is None:
            values = settings.form_from_settings(current)
            if not values.get("version") and versions:
                values["version"] = str(max(v["number"] for v in versions))
        return console.page(request, "assign.html", session, status=status, instance=instance, function=record,
                            versions=versions, values=values, errors=errors or {}, assigned=current is not None)

    @router.get("/{instance_id}/assign")
    @guard
    async def choose(request: Request, instance_id: str, function: str) -> Response:
        return redirect(f"/console/instances/{instance_id}/assign/{function}")

    @router.get("/{instance_id}/assign/{function}")
    @guard
    async def assign_form(request: Request, instance_id: str, function: str) -> Response:
        return await assign_page(request, console.viewer(request), instance_id, function)

    @router.post("/{instance_id}/assign/{function}/check")
    @guard
    async def assign_check(request: Request, instance_id: str, function: str) -> Response:
        _, form = await console.form(request)
        record = await catalog.get_function(function)
        checked = settings.check(form, record)
        if "version" not in checked.errors:
            version = checked.settings.get("version")
            numbers = {v["number"] for v in await catalog.list_versions(function)}
            if version not in numbers:
                checked.add("version", f"{function!r} has no version {version!r}; upload code first"
                            if not numbers else f"must be one of {', '.join(map(str, sorted(numbers)))}")
        return JSONResponse({"errors": checked.errors}, headers=SECURITY_HEADERS)

    @router.post("/{instance_id}/assign/{function}")
    @guard
    async def assign(request: Request, instance_id: str, function: str) -> Response:
        session, form = await console.form(request)
        values = {name: str(form.get(name) or "") for name in settings.FIELDS}
        converted = settings.settings_from_form(form)
        if converted.errors:
            return await assign_page(request, session, instance_id, function, values=values,
                                     errors=converted.errors, status=422)
        try:
            await fleet.put_assignment(instance_id, function, converted.settings)
        except ValidationError as exc:
            return await assign_page(request, session, instance_id, function, values=values,
                                     errors=settings.errors_from_problems(exc.problems), status=422)
        return redirect(f"/console/instances/{instance_id}", request=request,
                        flash=f"Assigned {function} version {converted.settings.get('version')}. "
                              "Deploy to send it to the gateway.")

    @router.post("/{instance_id}/assign/{function}/delete")
    @guard
    async def unassign(request: Request, instance_id: str, function: str) -> Response:
        await console.form(request)
        await fleet.delete_assignment(instance_id, function)
        return redirect(f"/console/instances/{instance_id}", request=request,
                        flash=f"Removed {function}; the next deployment stops it on the gateway.")

    return router


def deploy_view(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest deployment with its stages marked done/current/bad, and the recent history."""
    ordered = sorted(history, key=lambda d: d["number"], reverse=True)
    latest = ordered[0] if ordered else None
    marks: list[dict[str, str]] = []
    if latest is not None:
        seen = {s.get("stage") for s in latest.get("stages") or []}
        status = latest["status"]
        for stage in STAGES:
            if stage == status:
                kind = "done" if stage == "succeeded" else "current"
            elif stage in seen:
                kind = "done"
            else:
                kind = ""
            marks.append({"stage": stage, "kind": kind})
        if status in ("failed", "rolled_back"):
            marks.append({"stage": status, "kind": "bad"})
    return {"latest": latest, "marks": marks, "history": ordered[:HISTORY_SHOWN]}
