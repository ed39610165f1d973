"""The shop's events, and the exit conditions they raise.

Each event is handled once: its `event_id` is stored with its outcome in the transaction that
acts on it, so a replay (a retry after a lost answer) returns the first outcome and changes
nothing. An exit takes the confirmed order out of its merge (it ships as a normal order), marks
the offer `exited`, and tells the shopper why in their feed.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from cadence.serving import _schemas as S
from cadence.serving._offers import release, user_state
from cadence.serving._records import Context, ServiceError, log, notify
from cadence.serving._rules import Item, item_exit
from cadence.serving._tables import Event, Offer, Order, OrderItem

IN_MERGE = ("merging", "planned")


def receive(ctx: Context, event) -> S.EventOutcome:
    s = ctx.session
    prior = s.get(Event, event.event_id)
    if prior is not None:
        return _replayed(prior, event)
    try:
        exits = HANDLERS[event.type](ctx, event)
        outcome = S.EventOutcome(
            event_id=event.event_id, type=event.type, exits=exits, replayed=False
        )
        s.add(
            Event(
                event_id=event.event_id,
                type=event.type,
                user_id=getattr(event, "user_id", None),
                order_id=getattr(event, "order_id", None),
                received_at=ctx.now,
                outcome=outcome.model_dump(mode="json"),
            )
        )
        s.commit()
    except IntegrityError:  # a concurrent request: the same event, or the same order or offer
        s.rollback()
        prior = s.get(Event, event.event_id)
        if prior is None:
            raise ServiceError(
                409,
                "concurrent_change",
                "a concurrent request placed or changed the same order or offer; nothing was "
                "done, and sending the event again gets the answer as things now stand",
            ) from None
        return _replayed(prior, event)
    return outcome


def _replayed(prior: Event, event) -> S.EventOutcome:
    if prior.type != event.type:
        raise ServiceError(
            409, "event_id_reused", f"event_id {event.event_id!r} was a {prior.type} event"
        )
    return S.EventOutcome.model_validate({**prior.outcome, "replayed": True})


def exit_merge(ctx: Context, order: Order, reason: str) -> S.ExitPublic:
    """Releases the order, marks its offer exited, and starts the shopper's cool-down."""
    release(ctx, order, reason)
    if order.offer_id is not None:
        ctx.session.execute(
            update(Offer)
            .where(Offer.offer_id == order.offer_id, Offer.state == "confirmed")
            .values(state="exited", reason=reason, changed_at=ctx.now)
        )
    user_state(ctx, order.user_id).last_exit_at = ctx.now
    order.state, order.reason = "released", reason
    return S.ExitPublic(order_id=order.order_id, reason=reason)


def _order(ctx: Context, order_id: int) -> Order:
    order = ctx.session.get(Order, order_id)
    if order is None:
        raise ServiceError(404, "unknown_order", f"no order {order_id}")
    return order


def _check_items(ctx: Context, order: Order, items: list[S.ItemIn]) -> list[S.ExitPublic]:
    if order.state not in IN_MERGE:
        return []
    for item in items:
        usual = ctx.scores.usual_orders(order.user_id, item.category) if ctx.scores else None
        reason = item_exit(Item(**item.model_dump()), ctx.conf.exits, usual)
        if reason is not None:
            return [exit_merge(ctx, order, reason)]
    return []


def _add_items(ctx: Context, order: Order, items: list[S.ItemIn], first_line: int) -> None:
    for line, item in enumerate(items, start=first_line):
        ctx.session.add(OrderItem(order_id=order.order_id, line=line, **item.model_dump()))
        order.weight_kg += item.weight_kg * item.quantity
        order.volume_cm3 += item.volume_cm3 * item.quantity
        order.value += item.unit_price * item.quantity


def order_placed(ctx: Context, event: S.OrderPlaced) -> list[S.ExitPublic]:
    s, o = ctx.session, event.order
    if s.get(Order, o.order_id) is not None:
        raise ServiceError(409, "order_exists", f"order {o.order_id} was placed before")
    state, reason = "normal", None
    if o.offer_id is not None:
        offer = s.get(Offer, o.offer_id)
        if offer is None or offer.user_id != o.user_id:
            raise ServiceError(
                422, "unknown_offer", f"order.offer_id: no offer {o.offer_id!r} of {o.user_id!r}"
            )
        if s.scalar(select(Order.order_id).where(Order.offer_id == o.offer_id)) is not None:
            raise ServiceError(409, "offer_has_order", f"offer {o.offer_id} has an order already")
        # Only an explicitly confirmed offer's order is merged.
        if offer.state == "confirmed":
            state = "merging"
        else:
            reason = f"offer_{offer.state}"
    order = Order(
        **o.model_dump(exclude={"items"}),
        placed_at=event.occurred_at,
        weight_kg=0.0,
        volume_cm3=0.0,
        value=0.0,
        state=state,
        reason=reason,
        changed_at=ctx.now,
    )
    s.add(order)
    s.flush()
    _add_items(ctx, order, o.items, 1)
    log(
        ctx,
        "order_placed",
        user_id=o.user_id,
        offer_id=o.offer_id,
        order_id=o.order_id,
        state=state,
    )
    return _check_items(ctx, order, o.items)


def item_added(ctx: Context, event: S.ItemAdded) -> list[S.ExitPublic]:
    order = _order(ctx, event.order_id)
    last = ctx.session.scalar(
        select(func.max(OrderItem.line)).where(OrderItem.order_id == order.order_id)
    )
    _add_items(ctx, order, [event.item], (last or 0) + 1)
    log(ctx, "item_added", user_id=order.user_id, order_id=order.order_id, sku=event.item.sku)
    return _check_items(ctx, order, [event.item])


def address_changed(ctx: Context, event: S.AddressChanged) -> list[S.ExitPublic]:
    log(ctx, "address_changed", user_id=event.user_id)
    if not ctx.conf.exits.address_change:
        return []
    orders = ctx.session.scalars(
        select(Order).where(
            Order.user_id == event.user_id,
            Order.state.in_(IN_MERGE),
            Order.address_id != event.address_id,
        )
    ).all()
    return [exit_merge(ctx, o, "address_changed") for o in orders]


def payment_failed(ctx: Context, event: S.PaymentFailed) -> list[S.ExitPublic]:
    order = _order(ctx, event.order_id)
    log(ctx, "payment_failed", user_id=order.user_id, order_id=order.order_id)
    if order.state in IN_MERGE and ctx.conf.exits.payment_failure:
        return [exit_merge(ctx, order, "payment_failed")]
    return []


def order_cancelled(ctx: Context, event: S.OrderCancelled) -> list[S.ExitPublic]:
    order = _order(ctx, event.order_id)
    exits = [exit_merge(ctx, order, "user_cancelled")] if order.state in IN_MERGE else []
    if order.offer_id is not None:
        ctx.session.execute(
            update(Offer)
            .where(Offer.offer_id == order.offer_id, Offer.state.in_(("open", "confirmed")))
            .values(state="cancelled", reason="user_cancelled", changed_at=ctx.now)
        )
    order.state, order.changed_at = "cancelled", ctx.now
    log(ctx, "order_cancelled", user_id=order.user_id, order_id=order.order_id)
    return exits


def order_dispatched(ctx: Context, event: S.OrderDispatched) -> list[S.ExitPublic]:
    order = _order(ctx, event.order_id)
    if order.state == "cancelled":
        raise ServiceError(409, "order_cancelled", f"order {order.order_id} was cancelled")
    if order.offer_id is not None:
        ctx.session.execute(
            update(Offer)
            .where(Offer.offer_id == order.offer_id, Offer.state == "confirmed")
            .values(state="dispatched", changed_at=ctx.now)
        )
    order.state, order.changed_at = "dispatched", ctx.now
    log(ctx, "order_dispatched", user_id=order.user_id, order_id=order.order_id)
    return []


def consent_changed(ctx: Context, event: S.ConsentChanged) -> list[S.ExitPublic]:
    state = user_state(ctx, event.user_id)
    withdrawn = not event.granted
    if event.purpose == "profiling":
        state.profiling_withdrawn = withdrawn
    else:
        state.contact_withdrawn = withdrawn
    state.changed_at = ctx.now
    log(ctx, "consent_changed", user_id=event.user_id, purpose=event.purpose, granted=event.granted)
    if withdrawn:
        for offer in ctx.session.scalars(
            select(Offer).where(Offer.user_id == event.user_id, Offer.state == "open")
        ):
            offer.state, offer.reason, offer.changed_at = "cancelled", "consent_withdrawn", ctx.now
            notify(
                ctx,
                event.user_id,
                "offer_cancelled",
                offer_id=offer.offer_id,
                reason="consent_withdrawn",
            )
    return []


HANDLERS = {
    "order_placed": order_placed,
    "item_added": item_added,
    "address_changed": address_changed,
    "payment_failed": payment_failed,
    "order_cancelled": order_cancelled,
    "order_dispatched": order_dispatched,
    "consent_changed": consent_changed,
}
