"""A shopper's own controls and feed: profiling opt-out (and only their own opt-in back), and
what the service told them (offers, confirmations, exits and why)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from cadence.serving import _offers
from cadence.serving import _schemas as S
from cadence.serving._tables import UserEvent, UserState
from cadence.serving.api.deps import ServiceDep, SessionDep, context, role
from cadence.serving.api.routes.offers import UserId

router = APIRouter(prefix="/v1/users", tags=["users"])
Service = role("service")


def public(state: UserState) -> S.UserStatePublic:
    return S.UserStatePublic.model_validate(state, from_attributes=True)


@router.post("/{user_id}/profiling-opt-out", response_model=S.UserStatePublic)
def opt_out(
    user_id: UserId, body: S.ChannelIn, service: ServiceDep, session: SessionDep, caller=Service
) -> S.UserStatePublic:
    """Never profiled or offered again, and dropped from lists; an open offer is withdrawn."""
    with service.writes():
        state = _offers.opt_out(context(service, session, caller), user_id, channel=body.channel)
    return public(state)


@router.post("/{user_id}/profiling-opt-in", response_model=S.UserStatePublic)
def opt_in(
    user_id: UserId, body: S.ChannelIn, service: ServiceDep, session: SessionDep, caller=Service
) -> S.UserStatePublic:
    """Reverses an opt-out. Only the shopper can: the `service` role calls it for the
    signed-in shopper, and no other role may."""
    with service.writes():
        state = _offers.opt_in(context(service, session, caller), user_id, channel=body.channel)
    return public(state)


@router.get("/{user_id}/events", response_model=list[S.UserEventPublic], dependencies=[Service])
def feed(
    user_id: UserId,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[S.UserEventPublic]:
    """The shopper's notifications after sequence number `after`, oldest first: poll with the
    last `seq` seen."""
    rows = session.scalars(
        select(UserEvent)
        .where(UserEvent.user_id == user_id, UserEvent.seq > after)
        .order_by(UserEvent.seq)
        .limit(limit)
    )
    return [S.UserEventPublic.model_validate(r, from_attributes=True) for r in rows]
