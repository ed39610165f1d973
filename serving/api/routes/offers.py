"""Offers: ask for one, confirm it (the explicit opt-in), cancel it (free, before dispatch)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Path

from cadence.serving import _offers
from cadence.serving import _schemas as S
from cadence.serving._rules import NO_OFFER_REASONS
from cadence.serving._tables import Offer
from cadence.serving.api.deps import ServiceDep, context, role

router = APIRouter(prefix="/v1", tags=["offers"])
log = logging.getLogger("cadence.serving")
Service = role("service")
UserId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
OfferId = Annotated[str, Path(min_length=1, max_length=36)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=128,
        description="the client's unique key for this confirmation; a retry sends it again",
    ),
]


def public(offer: Offer) -> S.OfferPublic:
    return S.OfferPublic.model_validate(offer, from_attributes=True)


@router.get("/users/{user_id}/offer", response_model=S.OfferAnswer)
async def get_offer(user_id: UserId, service: ServiceDep, caller=Service) -> S.OfferAnswer:
    """The shopper's offer when they are eligible (the same one again while it is open),
    otherwise no offer and the reason code."""

    def work():
        with service.sessions() as session:
            return _offers.offer_for(context(service, session, caller), user_id)

    found = await service.run(work)
    shown = service.pseudonym(user_id)
    if isinstance(found, str):
        log.debug("no offer for shopper %s: %s", shown, found)
        service.metrics.offers.labels(found).inc()
        return S.OfferAnswer(reason=found, message=NO_OFFER_REASONS[found])
    log.debug("offer %s for shopper %s", found.offer_id, shown)
    service.metrics.offers.labels("offer").inc()
    return S.OfferAnswer(offer=public(found))


@router.post("/offers/{offer_id}/confirm", response_model=S.ConfirmationPublic)
async def confirm(
    offer_id: OfferId,
    body: S.ConfirmIn,
    key: IdempotencyKey,
    service: ServiceDep,
    caller=Service,
) -> S.ConfirmationPublic:
    """The shopper's explicit opt-in: who, when, which consent text, from which channel.
    Confirming again (the same key, or another) returns the first confirmation unchanged."""

    def work():
        with service.sessions() as session:
            return _offers.confirm(
                context(service, session, caller),
                offer_id,
                key=key,
                channel=body.channel,
                consent_version=body.consent_version,
            )

    made, new = await service.run(work)
    if new:
        service.metrics.confirmations.inc()
        log.info("offer %s confirmed by shopper %s", offer_id, service.pseudonym(made.user_id))
    return S.ConfirmationPublic(
        offer_id=made.offer_id,
        user_id=made.user_id,
        channel=made.channel,
        consent_version=made.consent_version,
        confirmed_at=made.confirmed_at,
        replayed=not new,
    )


@router.post("/offers/{offer_id}/cancel", response_model=S.OfferPublic)
async def cancel(
    offer_id: OfferId, body: S.ChannelIn, service: ServiceDep, caller=Service
) -> S.OfferPublic:
    """Free, any time before dispatch; the order goes back to normal handling."""

    def work():
        with service.sessions() as session:
            offer = _offers.cancel(
                context(service, session, caller), offer_id, channel=body.channel
            )
            return public(offer)

    return await service.run(work)
