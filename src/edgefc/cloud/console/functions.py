"""Function pages: the list and create form, versions with upload, the code editor, and diffs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from edgefc.cloud.console import bundle
from edgefc.cloud.console.web import Console, problem_flash, redirect, shows_errors
from edgefc.errors import EdgefcError, NotFound, ValidationError

FUNCTION_FIELDS = ("name", "runtime", "handler", "initializer")
STARTER = '''def handler(event, context):
    """Called for each event; event is bytes."""
    context.logger.info("got %d bytes", len(event))
    return {"hello": event.decode() or "world"}
'''


def _fields_errors(exc: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for line in exc.problems:
        path, sep, message = line.partition(": ")
        key = path.split(".")[0].split("[")[0] if sep else ""
        errors.setdefault(key if key in FUNCTION_FIELDS else "", []).append(message if key else line)
    return errors


def routes(console: Console) -> APIRouter:
    """Everything under ``/console/functions``."""
    router = APIRouter(prefix="/console/functions", include_in_schema=False)
    catalog = console.service.catalog
    guard = shows_errors(console)

    async def list_page(request: Request, *, values: dict[str, str] | None = None,
                        errors: dict[str, list[str]] | None = None, status: int = 200) -> Response:
        session = console.viewer(request)
        functions = await catalog.list_functions()
        return console.page(request, "functions.html", session, status=status, functions=functions,
                            values=values or {"runtime": "python3", "handler": "index.handler"},
                            errors=errors or {})

    @router.get("")
    @guard
    async def index(request: Request) -> Response:
        return await list_page(request)

    @router.post("")
    @guard
    async def create(request: Request) -> Response:
        _, form = await console.form(request)
        values = {k: str(form.get(k) or "").strip() for k in FUNCTION_FIELDS}
        spec = {k: v for k, v in values.items() if v}
        try:
            created = await catalog.create_function(spec)
        except ValidationError as exc:
            return await list_page(request, values=values, errors=_fields_errors(exc), status=422)
        except EdgefcError as exc:
            return await list_page(request, values=values, errors={"name": [exc.message]}, status=exc.http_status)
        name = created["name"]
        return redirect(f"/console/functions/{name}/edit", request=request,
                        flash=f"Created function {name}. Write its code below or upload a zip.")

    @router.get("/{name}")
    @guard
    async def detail(request: Request, name: str) -> Response:
        session = console.viewer(request)
        function = await catalog.get_function(name)
        versions = await catalog.list_versions(name)
        return console.page(request, "function.html", session, function=function, versions=versions)

    @router.post("/{name}/versions")
    @guard
    async def upload(request: Request, name: str) -> Response:
        _, form = await console.form(request)
        upload = form.get("code")
        if not isinstance(upload, UploadFile) or not upload.filename:
            flash = {"kind": "error", "text": "code: choose a .zip file to upload", "lines": []}
            return await _detail_with(request, name, flash, 422)
        data = await upload.read()
        try:
            version = await catalog.upload_version(name, data)
        except EdgefcError as exc:
            return await _detail_with(request, name, problem_flash(exc), exc.http_status)
        return redirect(f"/console/functions/{name}", request=request,
                        flash=f"Uploaded version {version['number']} (sha256 {version['sha256'][:12]}…).")

    async def _detail_with(request: Request, name: str, flash: dict[str, Any], status: int) -> Response:
        function = await catalog.get_function(name)
        versions = await catalog.list_versions(name)
        return console.page(request, "function.html", console.viewer(request), status=status, function=function,
                            versions=versions, flash=flash)

    @router.get("/{name}/edit")
    @guard
    async def editor(request: Request, name: str, version: int | None = None, file: str | None = None) -> Response:
        session = console.viewer(request)
        function = await catalog.get_function(name)
        versions = await catalog.list_versions(name)
        numbers = [v["number"] for v in versions]
        if version is None and numbers:
            version = max(numbers)
        if version is not None and version not in numbers:
            raise NotFound(f"function {name!r} has no version {version}")
        texts = bundle.text_files(await catalog.version_data(name, version)) if version is not None else {}
        module = function["handler"].rsplit(".", 1)[0].replace(".", "/") + ".py"
        path = file or (module if module in texts or not texts else next(iter(texts)))
        text = texts.get(path, STARTER if not texts else "")
        return console.page(request, "editor.html", session, function=function, versions=versions,
                            version=version, files=list(texts), path=path, text=text)

    @router.post("/{name}/edit")
    @guard
    async def save(request: Request, name: str) -> Response:
        session, form = await console.form(request)
        base = str(form.get("base") or "")
        path = str(form.get("path") or "")
        text = str(form.get("text") or "")
        function = await catalog.get_function(name)
        versions = await catalog.list_versions(name)
        try:
            previous = await catalog.version_data(name, int(base)) if base else None
            data = bundle.replace_file(previous, path, text)
            version = await catalog.upload_version(name, data)
        except (ValueError, EdgefcError) as exc:
            flash = problem_flash(exc) if isinstance(exc, EdgefcError) else {"kind": "error", "text": str(exc),
                                                                             "lines": []}
            return console.page(request, "editor.html", session, status=422, function=function,
                                versions=versions, version=int(base) if base else None, files=[path], path=path,
                                text=text, flash=flash)
        return redirect(f"/console/functions/{name}/edit?version={version['number']}&file={path}",
                        request=request, flash=f"Saved {path} as version {version['number']}.")

    @router.get("/{name}/diff")
    @guard
    async def diff(request: Request, name: str, a: int, b: int) -> Response:
        session = console.viewer(request)
        function = await catalog.get_function(name)
        lines = bundle.diff(await catalog.version_data(name, a), await catalog.version_data(name, b),
                            f"v{a}", f"v{b}")
        versions = await catalog.list_versions(name)
        return console.page(request, "diff.html", session, function=function, versions=versions, a=a, b=b,
                            lines=lines)

    @router.post("/{name}/delete")
    @guard
    async def delete(request: Request, name: str) -> Response:
        await console.form(request)
        await catalog.delete_function(name)
        return redirect("/console/functions", request=request, flash=f"Deleted function {name}.")

    return router

