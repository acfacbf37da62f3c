"""The console's HTTP app: the JSON API over the gRPC services, its OpenAPI document, the pages."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from services.console import problems
from services.console.gateway import Backends, BadBody, Metadata
from services.console.routes import Route, all_routes
from services.console.schema import message_schemas, ref
from ueba.callctx import ACTOR_METADATA

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1024 * 1024
ACTOR_PARAMETER = {
    "name": ACTOR_METADATA, "in": "header", "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    "description": "who acts (reviews, cases), when the services run without tokens; with tokens the token's name is the actor",
}
PROBLEM = {"description": "an error (RFC 9457 problem details)",
           "content": {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def create_app(backends: Backends, auth: str, cors_origins: tuple[str, ...] = ()) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        backends.open()
        yield
        await backends.close()

    # No Swagger or ReDoc pages: they load scripts from a CDN, and the console works air-gapped.
    app = FastAPI(title="UEBA console API", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", ACTOR_METADATA])
    _add_problem_handlers(app)
    routes = all_routes()
    for route in routes:
        _add_route(app, backends, route)

    @app.get("/api/v1/config", tags=["console"], summary="What the pages need to know: whether to ask for a token")
    async def config() -> dict[str, Any]:
        return {"auth": auth}

    @app.get("/healthz", tags=["console"], summary="Liveness of the console process")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    _document(app, routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _add_route(app: FastAPI, backends: Backends, route: Route) -> None:
    async def endpoint(request: Request):
        body = await _json_body(request)
        metadata = forwarded_metadata(request)
        if route.streams_csv:
            chunks = await backends.stream_csv(route, body, metadata)
            return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": 'attachment; filename="anomalies.csv"'})
        return JSONResponse(await backends.call(route, body, metadata))

    ok = ({"text/csv": {"schema": {"type": "string"}}} if route.streams_csv
          else {"application/json": {"schema": ref(route.method.output_type)}})
    app.add_api_route(
        route.path, endpoint, methods=["POST"], tags=[route.service], operation_id=f"{route.service}.{route.method.name}",
        summary=f"{route.method.containing_service.name}.{route.method.name}",
        responses={200: {"description": route.method.output_type.name, "content": ok}, "4XX": PROBLEM, "5XX": PROBLEM},
        openapi_extra={"parameters": [ACTOR_PARAMETER], "requestBody": {"required": False, "content": {
            "application/json": {"schema": ref(route.method.input_type)}}}},
    )


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadBody(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None


class BadAuthorization(ValueError):
    pass


class BadActor(ValueError):
    pass


def forwarded_metadata(request: Request) -> Metadata:
    """The caller's token and named actor as gRPC metadata; the services decide what they are worth."""
    metadata = []
    authorization = request.headers.get("authorization")
    if authorization is not None:
        # gRPC metadata carries printable ASCII only; anything else is no token of ours.
        if not _printable_ascii(authorization):
            raise BadAuthorization("the Authorization header is not a bearer token")
        metadata.append(("authorization", authorization))
    actor = request.headers.get(ACTOR_METADATA)
    if actor is not None:
        # The services check the name itself (1-128 printable characters); only what gRPC
        # metadata cannot carry is refused here.
        if not _printable_ascii(actor):
            raise BadActor(f"{ACTOR_METADATA}: a name of printable ASCII characters")
        metadata.append((ACTOR_METADATA, actor))
    return tuple(metadata)


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _add_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadBody)
    async def bad_body(_request, exc: BadBody):
        return problems.problem(400, str(exc), "INVALID_ARGUMENT")

    @app.exception_handler(BadAuthorization)
    async def bad_authorization(_request, exc: BadAuthorization):
        return problems.problem(401, str(exc), "UNAUTHENTICATED")

    @app.exception_handler(BadActor)
    async def bad_actor(_request, exc: BadActor):
        return problems.problem(400, str(exc), "INVALID_ARGUMENT")

    @app.exception_handler(grpc.RpcError)
    async def rpc_error(_request, exc: grpc.RpcError):
        return problems.from_rpc_error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return problems.problem(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        return problems.problem(400, "; ".join(str(e.get("msg")) for e in exc.errors()), "INVALID_ARGUMENT")


def _document(app: FastAPI, routes: list[Route]) -> None:
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(message_schemas([d for r in routes for d in (r.method.input_type, r.method.output_type)]))
    schemas["Problem"] = problems.SCHEMA
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"bearer": []}, {}]
    app.openapi = lambda: document
