"""Who gets an offer, on what terms, and which items take an order out of a merge.

Pure decisions over what the service read (the shopper's state, their score, their recent
offers) and the rules in `conf/serving.yaml`: no database, no clock of their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cadence.serving._config import ExitRules, OfferRules

# Why a shopper gets no offer, in the order they are checked.
NO_OFFER_REASONS = {
    "profiling_opt_out": "the shopper opted out of profiling",
    "profiling_withdrawn": "the shopper withdrew consent to profiling",
    "contact_withdrawn": "the shopper withdrew consent to being contacted",
    "offer_in_progress": "the shopper's confirmed offer is still under way",
    "contact_cap": "the shopper had as many offers lately as the contact cap allows",
    "recent_exit": "one of the shopper's orders left a merge lately",
    "not_scored": "the shopper is not on the model's latest list",
    "below_threshold": "the shopper's probability of ordering is below the threshold",
    "not_due": "the shopper's next order is not expected within the horizon",
}
# Why a confirmed order leaves its merge.
EXIT_REASONS = {
    "address_changed": "the delivery address changed after confirming",
    "unusual_category": "an item is outside the shopper's usual categories",
    "over_value_limit": "an item is worth more than the value limit",
    "fragile": "an item is fragile",
    "oversize": "an item is over the size limits",
    "payment_failed": "the payment failed",
    "missed_promise": "the merged delivery would miss the date promised at confirmation",
    "no_capacity": "no dispatch wave had room for the merged parcel",
    "user_cancelled": "the shopper cancelled",
}


@dataclass(frozen=True)
class Score:
    """What the offer needs of a shopper's latest score."""

    probability: float
    expected_next_order: dt.date | None
    model_version: str


@dataclass(frozen=True)
class Shopper:
    """What the service's own records say of a shopper."""

    profiling_opt_out: bool = False
    profiling_withdrawn: bool = False
    contact_withdrawn: bool = False
    live_offer: bool = False  # a confirmed offer not yet dispatched, cancelled or exited
    recent_offers: int = 0  # offers made within the contact cap's window
    last_exit_at: dt.datetime | None = None


def shopper_reason(shopper: Shopper, *, now: dt.datetime, rules: OfferRules) -> str | None:
    """The first reason the service's own records give for no offer, or None. Checked before
    the score is read: an opted-out shopper's score is never looked at."""
    if shopper.profiling_opt_out:
        return "profiling_opt_out"
    if shopper.profiling_withdrawn:
        return "profiling_withdrawn"
    if shopper.contact_withdrawn:
        return "contact_withdrawn"
    if shopper.live_offer:
        return "offer_in_progress"
    if shopper.recent_offers >= rules.contact_cap.offers:
        return "contact_cap"
    cooldown = dt.timedelta(days=rules.exit_cooldown_days)
    if shopper.last_exit_at is not None and now - shopper.last_exit_at < cooldown:
        return "recent_exit"
    return None


def score_reason(score: Score | None, *, now: dt.datetime, rules: OfferRules) -> str | None:
    """The reason the shopper's score gives for no offer, or None when it makes them eligible."""
    if score is None:
        return "not_scored"
    if not score.probability >= rules.threshold:
        return "below_threshold"
    expected = score.expected_next_order
    if expected is None or expected > now.date() + dt.timedelta(days=rules.horizon_days):
        return "not_due"
    return None


@dataclass(frozen=True)
class Terms:
    suggested_date: dt.date
    cancel_until: dt.datetime
    expires_at: dt.datetime


def offer_terms(score: Score, *, now: dt.datetime, rules: OfferRules) -> Terms:
    """The suggested date (`lead_days` before the expected order, never before tomorrow), the
    free cancellation's end on that date, and when the unanswered offer lapses."""
    tomorrow = now.date() + dt.timedelta(days=1)
    expected = score.expected_next_order or tomorrow
    suggested = max(tomorrow, expected - dt.timedelta(days=rules.lead_days))
    cancel_until = dt.datetime.combine(suggested, dt.time(rules.cancel_until_hour), tzinfo=dt.UTC)
    expires = min(now + dt.timedelta(hours=rules.valid_hours), cancel_until)
    return Terms(suggested_date=suggested, cancel_until=cancel_until, expires_at=expires)


@dataclass(frozen=True)
class Item:
    """An order line; weight and volume are per unit."""

    sku: str
    category: str | None
    quantity: int
    unit_price: float
    weight_kg: float
    volume_cm3: float
    fragile: bool


def item_exit(item: Item, rules: ExitRules, usual_orders: int | None) -> str | None:
    """The reason `item` takes its order out of a merge, or None. `usual_orders`: how often the
    shopper ordered the item's category in the last 365 days (None: not known)."""
    if rules.value_limit is not None and item.unit_price * item.quantity > rules.value_limit:
        return "over_value_limit"
    if rules.fragile and item.fragile:
        return "fragile"
    big = rules.oversize
    if big is not None and (item.weight_kg > big.weight_kg or item.volume_cm3 > big.volume_cm3):
        return "oversize"
    if (
        rules.usual_category_min_orders > 0
        and usual_orders is not None
        and usual_orders < rules.usual_category_min_orders
    ):
        return "unusual_category"
    return None
