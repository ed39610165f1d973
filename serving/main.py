"""The merge service's app: routers, error bodies, the body-size limit and request metrics."""

from __future__ import annotations

import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cadence.serving._records import ServiceError
from cadence.serving._service import Service
from cadence.serving.api.routes import (
    admin,
    consolidations,
    events,
    health,
    offers,
    review,
    routing,
    users,
)

MAX_BODY_BYTES = 256 * 1024


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="Cadence merge service",
        version="1",
        description="Offers to order early with explicit opt-in, exit conditions, "
        "consolidation, order routing with a shared stock view. Every route under /v1 needs "
        "an X-API-Key.",
    )
    app.state.service = service
    for module in (health, offers, users, events, consolidations, routing, review, admin):
        app.include_router(module.router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(Guard, service=service)
    return app


def _problem(status: int, code: str, message: str, errors=(), headers=None) -> JSONResponse:
    body = {"code": code, "message": message, "errors": list(errors)}
    return JSONResponse(body, status_code=status, headers=headers)


async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return _problem(exc.status, exc.code, exc.message)


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    return _problem(
        exc.status_code, codes.get(exc.status_code, "refused"), str(exc.detail), (), exc.headers
    )


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field that is wrong: `body.order.items.0.quantity: ...`."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return _problem(422, "invalid_request", message, errors)


class Guard:
    """Refuses bodies over MAX_BODY_BYTES (413) before they are read whole, and times every
    request by its route's template (never its raw path, which holds user ids)."""

    def __init__(self, app, service: Service) -> None:
        self.app = app
        self.metrics = service.metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            await _too_large(scope, receive, send)
            return
        seen = 0
        status = [500]

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise _TooLarge
            return message

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            await _too_large(scope, receive, send)
            status[0] = 413
        route = scope.get("route")
        self.metrics.requests.labels(
            scope["method"], getattr(route, "path", "unmatched"), str(status[0])
        ).observe(time.perf_counter() - started)


class _TooLarge(Exception):
    pass


async def _too_large(scope, receive, send) -> None:
    response = _problem(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    await response(scope, receive, send)
