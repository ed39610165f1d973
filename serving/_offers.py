"""Offers, the explicit opt-in, free cancellation, and the profiling opt-out.

Every change checks the state it expects in the same statement that changes it (`UPDATE ...
WHERE state = 'open'`), so two requests racing for one offer cannot both win; the database's
unique keys (one confirmation per offer, one per idempotency key, one live offer per shopper)
settle the rest, and the loser reads what the winner wrote.
"""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from cadence.serving._records import Context, ServiceError, log, notify
from cadence.serving._rules import Shopper, offer_terms, score_reason, shopper_reason
from cadence.serving._tables import AuditLog, Confirmation, Offer, Order, UserEvent, UserState


def offer_for(ctx: Context, user_id: str):
    """The shopper's offer (their open one again, or a new one, as a row with the offers
    table's columns), or the reason for none.

    The hot path of the service, so in SQLAlchemy Core: one query for the shopper's offers
    that matter (live ones, and those within the contact cap's window), one for their state,
    one online read, and three inserts, a third of the ORM's cost."""
    s, rules = ctx.session, ctx.conf.offers
    since = ctx.now - dt.timedelta(days=rules.contact_cap.days)
    rows = s.execute(
        select(OFFERS).where(
            OFFERS.c.user_id == user_id,
            or_(OFFERS.c.state.in_(LIVE), OFFERS.c.created_at >= since),
        )
    ).all()
    live = next((r for r in rows if r.state in LIVE), None)
    if live is not None and live.state == "open":
        if live.expires_at > ctx.now:
            return live
        _expire(ctx, live)
        live = None
    state = s.execute(select(STATES).where(STATES.c.user_id == user_id)).first()
    shopper = Shopper(
        profiling_opt_out=bool(state and state.profiling_opt_out),
        profiling_withdrawn=bool(state and state.profiling_withdrawn),
        contact_withdrawn=bool(state and state.contact_withdrawn),
        live_offer=live is not None,
        recent_offers=sum(1 for r in rows if r.created_at >= since),
        last_exit_at=state.last_exit_at if state else None,
    )
    reason = shopper_reason(shopper, now=ctx.now, rules=rules)
    if reason is not None:
        return reason
    if ctx.scores is None:
        raise ServiceError(503, "scores_unavailable", "the online store holds no scores yet")
    score = ctx.scores.score(user_id)
    reason = score_reason(score, now=ctx.now, rules=rules)
    if reason is not None:
        return reason
    terms = offer_terms(score, now=ctx.now, rules=rules)
    offer = {
        "offer_id": str(uuid.uuid4()),
        "user_id": user_id,
        "cohort": rules.campaign,
        "incentive": rules.incentive.kind,
        "discount_rate": rules.incentive.discount_rate,
        "suggested_date": terms.suggested_date,
        "expected_order_date": score.expected_next_order,
        "cancel_until": terms.cancel_until,
        "consent_version": rules.consent_version,
        "probability": score.probability,
        "model_version": score.model_version,
        "created_at": ctx.now,
        "expires_at": terms.expires_at,
        "state": "open",
        "reason": None,
        "changed_at": ctx.now,
    }
    oid = offer["offer_id"]
    try:
        s.execute(insert(OFFERS), [offer])
        s.execute(
            insert(AuditLog.__table__),
            [
                {
                    "at": ctx.now,
                    "actor": ctx.actor,
                    "action": "offer_made",
                    "user_id": user_id,
                    "offer_id": oid,
                    "order_id": None,
                    "detail": {"cohort": rules.campaign},
                }
            ],
        )
        s.execute(
            insert(UserEvent.__table__),
            [
                {
                    "user_id": user_id,
                    "kind": "offer_made",
                    "offer_id": oid,
                    "order_id": None,
                    "reason": None,
                    "at": ctx.now,
                }
            ],
        )
        s.commit()
    except IntegrityError:  # a concurrent request made the shopper's offer first
        s.rollback()
        again = s.execute(
            select(OFFERS).where(OFFERS.c.user_id == user_id, OFFERS.c.state.in_(LIVE))
        ).first()
        return again if again is not None and again.state == "open" else "offer_in_progress"
    return SimpleNamespace(**offer)


OFFERS = Offer.__table__
STATES = UserState.__table__
LIVE = ("open", "confirmed")


def _expire(ctx: Context, offer: Offer) -> None:
    done = ctx.session.execute(
        update(Offer)
        .where(Offer.offer_id == offer.offer_id, Offer.state == "open")
        .values(state="expired", reason="unanswered", changed_at=ctx.now)
    )
    if done.rowcount:
        log(ctx, "offer_expired", user_id=offer.user_id, offer_id=offer.offer_id)
    ctx.session.commit()


def _offer(ctx: Context, offer_id: str) -> Offer:
    offer = ctx.session.get(Offer, offer_id)
    if offer is None:
        raise ServiceError(404, "unknown_offer", f"no offer {offer_id!r}")
    return offer


def confirm(
    ctx: Context, offer_id: str, *, key: str, channel: str, consent_version: str
) -> tuple[Confirmation, bool]:
    """The shopper's explicit opt-in; returns the confirmation and whether this call made it.
    A retry, or a second confirmation of the same offer, returns the first one unchanged."""
    s = ctx.session
    prior = s.scalar(select(Confirmation).where(Confirmation.idempotency_key == key))
    if prior is not None:
        if prior.offer_id != offer_id:
            raise ServiceError(
                422, "idempotency_key_reused", "Idempotency-Key was used for another offer"
            )
        return prior, False
    offer = _offer(ctx, offer_id)
    prior = s.get(Confirmation, offer_id)
    if prior is not None:
        return prior, False
    if offer.state == "open" and offer.expires_at <= ctx.now:
        _expire(ctx, offer)
        raise ServiceError(409, "offer_expired", f"offer {offer_id} lapsed unanswered")
    if offer.state != "open":
        raise ServiceError(409, f"offer_{offer.state}", f"offer {offer_id} is {offer.state}")
    if consent_version != offer.consent_version:
        raise ServiceError(
            409,
            "consent_version_mismatch",
            f"consent_version {consent_version!r} is not the offer's ({offer.consent_version})",
        )
    moved = s.execute(
        update(Offer)
        .where(Offer.offer_id == offer_id, Offer.state == "open")
        .values(state="confirmed", changed_at=ctx.now)
    )
    made = Confirmation(
        offer_id=offer_id,
        idempotency_key=key,
        user_id=offer.user_id,
        channel=channel,
        consent_version=consent_version,
        confirmed_at=ctx.now,
        key_id=ctx.actor,
    )
    if moved.rowcount:
        s.add(made)
        log(ctx, "offer_confirmed", user_id=offer.user_id, offer_id=offer_id, channel=channel)
        notify(ctx, offer.user_id, "offer_confirmed", offer_id=offer_id)
    try:
        s.commit()
    except IntegrityError:  # a concurrent request won, for this offer or with this key
        s.rollback()
        by_key = s.scalar(select(Confirmation).where(Confirmation.idempotency_key == key))
        if by_key is not None and by_key.offer_id != offer_id:
            raise ServiceError(
                422, "idempotency_key_reused", "Idempotency-Key was used for another offer"
            ) from None
    kept = s.get(Confirmation, offer_id)
    if kept is None:
        state = s.scalar(select(Offer.state).where(Offer.offer_id == offer_id))
        raise ServiceError(409, f"offer_{state}", f"offer {offer_id} is {state}")
    return kept, kept is made


def cancel(ctx: Context, offer_id: str, *, channel: str) -> Offer:
    """Free, any time before dispatch; a confirmed offer's order goes back to normal handling."""
    s = ctx.session
    offer = _offer(ctx, offer_id)
    if offer.state == "cancelled":
        return offer
    done = s.execute(
        update(Offer)
        .where(Offer.offer_id == offer_id, Offer.state.in_(LIVE))
        .values(state="cancelled", reason="user_cancelled", changed_at=ctx.now)
    )
    if not done.rowcount:
        s.rollback()
        state = s.scalar(select(Offer.state).where(Offer.offer_id == offer_id))
        if state == "cancelled":
            return s.get(Offer, offer_id)
        raise ServiceError(409, f"offer_{state}", f"offer {offer_id} is {state}: too late")
    log(ctx, "offer_cancelled", user_id=offer.user_id, offer_id=offer_id, channel=channel)
    notify(ctx, offer.user_id, "offer_cancelled", offer_id=offer_id, reason="user_cancelled")
    order = s.scalar(select(Order).where(Order.offer_id == offer_id))
    if order is not None and order.state in ("merging", "planned"):
        release(ctx, order, "user_cancelled")
    s.commit()
    s.refresh(offer)
    return offer


def release(ctx: Context, order: Order, reason: str) -> None:
    """Takes a confirmed order out of its merge: it ships as a normal order. The caller
    commits."""
    ctx.session.execute(
        update(Order)
        .where(Order.order_id == order.order_id)
        .values(state="released", reason=reason, changed_at=ctx.now)
    )
    log(
        ctx,
        "merge_exit",
        user_id=order.user_id,
        offer_id=order.offer_id,
        order_id=order.order_id,
        reason=reason,
    )
    notify(
        ctx,
        order.user_id,
        "merge_exit",
        offer_id=order.offer_id,
        order_id=order.order_id,
        reason=reason,
    )


def user_state(ctx: Context, user_id: str) -> UserState:
    """The shopper's state row, made on first need (a concurrent maker's row is reused)."""
    s = ctx.session
    state = s.get(UserState, user_id)
    if state is not None:
        return state
    try:
        with s.begin_nested():
            state = UserState(user_id=user_id, changed_at=ctx.now)
            s.add(state)
    except IntegrityError:
        state = s.get(UserState, user_id)
    return state


def opt_out(ctx: Context, user_id: str, *, channel: str) -> UserState:
    """Never profiled or offered again, and left off every list, until the shopper says
    otherwise; their open offer lapses. A confirmed order stays theirs (they chose it)."""
    s = ctx.session
    state = user_state(ctx, user_id)
    if state.profiling_opt_out:
        s.commit()
        return state
    state.profiling_opt_out = True
    state.changed_at = ctx.now
    log(ctx, "profiling_opt_out", user_id=user_id, channel=channel)
    notify(ctx, user_id, "profiling_opt_out")
    for offer in s.scalars(select(Offer).where(Offer.user_id == user_id, Offer.state == "open")):
        offer.state, offer.reason, offer.changed_at = "cancelled", "profiling_opt_out", ctx.now
        log(
            ctx,
            "offer_cancelled",
            user_id=user_id,
            offer_id=offer.offer_id,
            reason="profiling_opt_out",
        )
    s.commit()
    return state


def withdrawn_users(connection) -> set[str]:
    """Shoppers who opted out of profiling, or withdrew consent to it or to being contacted:
    no list may hold them."""
    rows = connection.execute(
        select(UserState.user_id).where(
            UserState.profiling_opt_out
            | UserState.profiling_withdrawn
            | UserState.contact_withdrawn
        )
    )
    return {r[0] for r in rows}


def opt_in(ctx: Context, user_id: str, *, channel: str) -> UserState:
    """The shopper's own reversal of their opt-out."""
    s = ctx.session
    state = user_state(ctx, user_id)
    if state.profiling_opt_out:
        state.profiling_opt_out = False
        state.changed_at = ctx.now
        log(ctx, "profiling_opt_in", user_id=user_id, channel=channel)
        notify(ctx, user_id, "profiling_opt_in")
    s.commit()
    return state
