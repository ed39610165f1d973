"""The audit log, for reviewers: read only, oldest first, paged by sequence number."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from cadence.serving import _schemas as S
from cadence.serving._tables import AuditLog
from cadence.serving.api.deps import SessionDep, role

router = APIRouter(prefix="/v1", tags=["review"])


@router.get("/audit-log", response_model=list[S.AuditEntry], dependencies=[role("reviewer")])
def audit_log(
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    user_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> list[S.AuditEntry]:
    query = select(AuditLog).where(AuditLog.seq > after)
    if user_id is not None:
        query = query.where(AuditLog.user_id == user_id)
    if action is not None:
        query = query.where(AuditLog.action == action)
    rows = session.scalars(query.order_by(AuditLog.seq).limit(limit))
    return [S.AuditEntry.model_validate(r, from_attributes=True) for r in rows]
