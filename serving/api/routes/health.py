"""Liveness, readiness and metrics: open, for the orchestrator and the scraper."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from cadence.serving.api.deps import ServiceDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(service: ServiceDep, session: SessionDep) -> JSONResponse:
    """Ready when the database and the online store answer and a champion exists (503 and
    what is missing otherwise)."""
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready; say which
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if service.scores is None:
        checks["online_store"] = "no scores published"
    else:
        try:
            service.scores.ping()
            checks["online_store"] = "ok"
        except Exception as exc:  # the store's own error class varies by backend
            checks["online_store"] = f"unreachable: {type(exc).__name__}"
    try:
        version = service.champion()
        checks["champion"] = f"v{version}" if version else "none"
    except Exception as exc:  # the registry's error class varies by tracking backend
        checks["champion"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for k, v in checks.items() if k != "champion") and checks[
        "champion"
    ].startswith("v")
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
