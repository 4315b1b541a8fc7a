"""Routes of the API on plain Starlette, with the OpenAPI description of each built from its handler.

A handler is declared as with FastAPI (``@router.get(path)``, parameters by name: ``request``, path parameters,
then query parameters with their defaults; ``int`` or ``Annotated[int, Range(lo, hi)]`` for numbers) and
returns a ``Response`` or something JSON. What FastAPI gave beyond this (pydantic models per route, dependency
injection) the API does not use, and its import cost the gateway ~8 MiB of idle memory.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgefc.errors import BadRequest

Handler = Callable[..., Awaitable[Any]]
_ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


@dataclass(frozen=True)
class Range:
    """Bounds of an integer parameter: ``Annotated[int, Range(1, 10)]``."""

    ge: int | None = None
    le: int | None = None
    description: str = ""


@dataclass(frozen=True)
class _Param:
    name: str
    where: str  # "path" | "query"
    kind: type  # str | int
    default: Any
    bounds: Range | None

    def parse(self, raw: str | None) -> Any:
        """The value of the parameter from its text. Raises BadRequest naming it."""
        if raw is None:
            return self.default
        if self.kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"invalid request: {self.where}.{self.name}: must be a whole number, got {raw!r}",
                                 details=[f"{self.where}.{self.name}: not a whole number"]) from None  # fmt: skip
            b = self.bounds
            if b is not None and ((b.ge is not None and value < b.ge) or (b.le is not None and value > b.le)):
                raise BadRequest(f"invalid request: {self.where}.{self.name}: must be between {b.ge} and {b.le}, "
                                 f"got {value}", details=[f"{self.where}.{self.name}: out of range"])  # fmt: skip
            return value
        return raw

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.kind is int else "string"}
        if self.bounds is not None:
            if self.bounds.ge is not None:
                schema["minimum"] = self.bounds.ge
            if self.bounds.le is not None:
                schema["maximum"] = self.bounds.le
        if self.where == "query" and self.default is not None:
            schema["default"] = self.default
        out: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.where == "path", "schema": schema}
        if self.bounds is not None and self.bounds.description:
            out["description"] = self.bounds.description
        return out


def _params(handler: Handler, path: str) -> list[_Param]:
    hints = typing.get_type_hints(handler, include_extras=True)
    in_path = set(re.findall(r"{(\w+)}", path))
    params = []
    for name, p in inspect.signature(handler).parameters.items():
        hint = hints.get(name, str)
        if hint is Request:
            continue
        bounds = None
        if typing.get_origin(hint) is typing.Annotated:
            base, *extra = typing.get_args(hint)
            bounds = next((e for e in extra if isinstance(e, Range)), None)
            hint = base
        kind = int if hint is int else str
        default = None if p.default is inspect.Parameter.empty else p.default
        params.append(_Param(name, "path" if name in in_path else "query", kind, default, bounds))
    return params


class Router:
    """A group of routes (one module of the API) and their OpenAPI operations."""

    def __init__(self, *, tags: list[str]) -> None:
        self.tags = tags
        self.routes: list[Route] = []
        self.operations: list[tuple[str, str, dict[str, Any]]] = []  # (path, method, operation)

    def add(self, method: str, path: str, *, status_code: int = 200,
            openapi_extra: dict[str, Any] | None = None) -> Callable[[Handler], Handler]:  # fmt: skip
        def register(handler: Handler) -> Handler:
            params = _params(handler, path)
            wants_request = "request" in inspect.signature(handler).parameters

            async def endpoint(request: Request) -> Response:
                kwargs: dict[str, Any] = {"request": request} if wants_request else {}
                for p in params:
                    source = request.path_params if p.where == "path" else request.query_params
                    kwargs[p.name] = p.parse(source.get(p.name))
                result = await handler(**kwargs)
                return result if isinstance(result, Response) else JSONResponse(result, status_code=status_code)

            self.routes.append(Route(path, endpoint, methods=[method], name=handler.__name__))
            self.operations.append((path, method.lower(), self._operation(handler, path, method, status_code,
                                                                           params, openapi_extra)))  # fmt: skip
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("DELETE", path, **kwargs)

    def _operation(self, handler: Handler, path: str, method: str, status: int, params: list[_Param],
                   extra: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
        doc = inspect.getdoc(handler) or ""
        ok: dict[str, Any] = {"description": "Successful Response"}
        if status != 204:
            ok["content"] = {"application/json": {"schema": {}}}
        operation: dict[str, Any] = {
            "tags": list(self.tags),
            "summary": handler.__name__.replace("_", " ").title(),
            "description": doc,
            "operationId": f"{handler.__name__}{re.sub(r'[^0-9a-zA-Z_]', '_', path)}_{method.lower()}",
            "responses": {str(status): ok, "4XX": {"description": "bad request, not found, conflict …", **_ERROR_REF},
                          "5XX": {"description": "the gateway or a function failed", **_ERROR_REF}},
        }  # fmt: skip
        if params:
            operation["parameters"] = [p.schema() for p in params]
        operation.update(extra or {})
        return operation
