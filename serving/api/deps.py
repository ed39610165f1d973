"""The routes' dependencies as `Annotated` aliases, so tests can swap them: the service, a
database session per request, the caller behind the API key, and the role check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from cadence.serving._keys import Caller, caller_of
from cadence.serving._records import Context
from cadence.serving._service import Service


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_session(service: ServiceDep) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")


async def get_caller(
    service: ServiceDep, key: Annotated[str | None, Security(_key_header)]
) -> Caller:
    """The key's caller: from the service's short-lived cache, else the database."""
    if not key:
        raise HTTPException(401, "missing X-API-Key header", {"WWW-Authenticate": "APIKey"})
    known, caller = service.keys.get(key)
    if not known:
        caller = None if len(key) > 200 else await run_in_threadpool(_lookup, service, key)
        service.keys.put(key, caller)
    if caller is None:
        raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "APIKey"})
    return caller


def _lookup(service: Service, key: str) -> Caller | None:
    with service.sessions() as session:
        return caller_of(session, key)


CallerDep = Annotated[Caller, Depends(get_caller)]


def role(*allowed: str):
    """A dependency that lets only callers with one of the `allowed` roles through (403)."""

    async def check(caller: CallerDep) -> Caller:
        if caller.role not in allowed:
            raise HTTPException(
                403, f"role {caller.role!r} may not do this; it needs {' or '.join(allowed)}"
            )
        return caller

    return Depends(check)


def context(service: Service, session: Session, caller: Caller | None) -> Context:
    return Context(
        session=session,
        actor=caller.key_id if caller else "system",
        now=service.clock(),
        conf=service.conf,
        scores=service.scores,
    )
