"""The shop's events: orders placed, items added, addresses changed, payments failed, orders
cancelled or dispatched, consent changed. Exit conditions are checked as each arrives."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from cadence.serving import _events
from cadence.serving import _schemas as S
from cadence.serving.api.deps import ServiceDep, context, role

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("cadence.serving")


@router.post("/events", response_model=S.EventOutcome)
async def receive(event: S.EventIn, service: ServiceDep, caller=role("service")) -> S.EventOutcome:
    """Handles the event once; a replay of its `event_id` returns the first outcome."""

    def work():
        with service.sessions() as session:
            return _events.receive(context(service, session, caller), event)

    outcome = await service.run(work)
    if not outcome.replayed:
        for gone in outcome.exits:
            service.metrics.exits.labels(gone.reason).inc()
            log.info("order %s left its merge: %s", gone.order_id, gone.reason)
    return outcome
