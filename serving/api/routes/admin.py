"""Keys and configuration, for admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from cadence.serving import _keys
from cadence.serving import _schemas as S
from cadence.serving._records import Context, log
from cadence.serving.api.deps import ServiceDep, SessionDep, role

router = APIRouter(prefix="/v1", tags=["admin"])
Admin = role("admin")


@router.post("/keys", response_model=S.KeyCreated, status_code=201)
def create_key(
    body: S.KeyIn, service: ServiceDep, session: SessionDep, caller=Admin
) -> S.KeyCreated:
    """A new key; the response is the only place it is ever shown."""
    with service.writes():
        key = _keys.create_key(session, body.role, note=body.note, actor=caller.key_id)
    return S.KeyCreated(key_id=key.split("_")[1], role=body.role, key=key)


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(
    key_id: Annotated[str, Path(min_length=1, max_length=16)],
    service: ServiceDep,
    session: SessionDep,
    caller=Admin,
) -> None:
    with service.writes():
        revoked = _keys.revoke_key(session, key_id, actor=caller.key_id)
    if not revoked:
        raise HTTPException(404, f"no live key {key_id!r}")
    service.keys.clear()


@router.get("/config", dependencies=[Admin])
def config(service: ServiceDep) -> dict[str, Any]:
    """The rules the service decides with now (conf/serving.yaml as last read)."""
    return service.conf.model_dump(mode="json")


@router.post("/config/reload")
def reload(service: ServiceDep, session: SessionDep, caller=Admin) -> dict[str, Any]:
    """Re-reads conf/serving.yaml; a bad file is refused (422) and the rules in force stay."""
    if service.reload_conf is None:
        raise HTTPException(409, "this service was started with fixed rules")
    try:
        conf = service.reload_conf()
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    service.conf = conf
    ctx = Context(session, caller.key_id, service.clock(), conf, service.scores)
    with service.writes():
        log(ctx, "config_reloaded", **conf.model_dump(mode="json"))
        session.commit()
    return conf.model_dump(mode="json")
