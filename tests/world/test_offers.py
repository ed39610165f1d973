"""Offers and replay: the shoppers' true response, a policy hook that sees only the shop's own
data, a saved state that runs on exactly, and orders that an accepted offer brings forward."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cadence.world import OfferError, ResponseParams, World, WorldConfig, respond
from tests.world.conftest import run_world

pytestmark = pytest.mark.data

CFG = WorldConfig(users=1500, days=90, seed=13, start=dt.date(2025, 2, 1), truth_every_days=7)
OFFER_DAY = 40


def _tables(batches) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = {}
    for name, t in batches:
        parts.setdefault(name, []).append(t)
    return {k: pa.concat_tables(v).combine_chunks() for k, v in parts.items()}


def _same(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name


def _express_to_all(view):
    """On OFFER_DAY, a free express upgrade for three days later to every shopper signed up."""
    if view.day != OFFER_DAY:
        return []
    users = view.table("users").to_pandas()
    users = users[users.signup_at < pd.Timestamp(view.date, tz="UTC")]
    return pd.DataFrame(
        {
            "user_id": users.user_id,
            "incentive": "express_upgrade",
            "discount_rate": 0.0,
            "suggested_date": view.date + dt.timedelta(days=3),
        }
    )


def _discount_once(users: list[str], rate: float):
    """A policy: on OFFER_DAY, `rate` off an order two days later, to each of `users`."""

    def policy(view):
        if view.day != OFFER_DAY:
            return []
        return pd.DataFrame(
            {
                "user_id": users,
                "incentive": "discount",
                "discount_rate": rate,
                "suggested_date": view.date + dt.timedelta(days=2),
            }
        )

    return policy


@pytest.fixture(scope="module")
def plain():
    return {k: v for k, v in run_world(CFG).items()}


@pytest.fixture(scope="module")
def campaign():
    return _tables(World(CFG, policy=_express_to_all).run())


def test_a_policy_that_sends_nothing_changes_nothing(plain):
    _same(_tables(World(CFG, policy=lambda view: []).run()), plain)


def test_a_saved_world_runs_on_exactly(plain):
    world = World(CFG)  # no policy before the save: the shop's history is kept all the same
    first = list(world.run(until=33))
    state = world.save()
    seen = []

    def look(view):
        seen.append(view.table("orders").num_rows)
        return []

    rest = list(World.load(state, policy=look).run())
    _same(_tables(first + rest), plain)
    # The policy of the resumed world sees the orders made before the save.
    before = _tables(first)["orders"].num_rows
    assert seen[0] == before > 0 and seen[-1] > before
    with pytest.raises(ValueError, match="until must lie"):
        list(World.load(state).run(until=10))


def test_the_policy_sees_only_what_the_shop_knew_that_morning():
    seen = {}

    def look(view):
        if view.day in (1, 30):
            now = pd.Timestamp(view.date, tz="UTC")
            seen[view.day] = {
                "orders": view.table("orders").to_pandas(),
                "coupons": view.table("coupons").to_pandas(),
                "users": view.table("users").to_pandas(),
                "shipments": view.table("shipments").to_pandas(),
                "returns": view.table("returns").to_pandas(),
                "contacts": view.table("service_contacts").to_pandas(),
                "weather": view.table("weather").to_pandas(),
                "now": now,
            }
        return []

    list(World(CFG, policy=look).run(until=31))
    assert seen[30]["orders"].ordered_at.max() < seen[30]["now"]
    assert len(seen[30]["orders"]) > len(seen[1]["orders"]) > 0
    assert (seen[30]["users"].signup_at < seen[30]["now"]).all()
    # Nothing stamped later shows: deliveries (and lateness) to come, returns, complaints.
    ships = seen[30]["shipments"]
    assert ships.delivered_at.notna().sum() > 50 and ships.delivered_at.isna().sum() > 0
    assert (ships.delivered_at.dropna() < seen[30]["now"]).all()
    assert (ships.late.isna() == ships.delivered_at.isna()).all()
    assert (seen[30]["returns"].requested_at < seen[30]["now"]).all()
    assert (seen[30]["contacts"].ts < seen[30]["now"]).all()
    coupons = seen[30]["coupons"]
    assert (coupons.issued_at < seen[30]["now"]).all()
    assert (coupons.redeemed_at.dropna() < seen[30]["now"]).all()
    # The weather feed: every region each day up to today's forecast, none after.
    weather = seen[30]["weather"]
    assert weather.date.max() == seen[30]["now"].date() and len(weather) == 31 * 7
    with pytest.raises(ValueError, match="no raw table 'truth_oracle'"):
        list(World(CFG, policy=lambda v: v.table("truth_oracle")).run(until=2))


def test_response_rises_with_need_and_incentive_and_falls_with_fatigue():
    p = ResponseParams()
    base = dict(
        days_to_due=np.array([3.0]),
        coupon_response=np.array([0.6]),
        discount_rate=np.array([0.0]),
        express=np.array([True]),
        fatigue=np.array([0.0]),
        lapsed=np.array([False]),
    )

    def at(**change):
        return float(respond(p, **{**base, **{k: np.array([v]) for k, v in change.items()}})[0])

    x = at()
    assert at(days_to_due=1.0) > x > at(days_to_due=20.0) > at(days_to_due=np.inf)
    assert at(discount_rate=0.2) > at(discount_rate=0.05)
    assert at(coupon_response=1.5) > x > at(coupon_response=0.3)
    assert at(fatigue=2.0) < x and at(lapsed=True) < x and at(express=False) < x


def test_free_express_three_days_early_is_accepted_by_five_to_twenty_five_percent(campaign):
    offers = campaign["offers"].to_pandas()
    truth = campaign["truth_offers"].to_pandas().merge(offers, on=["offer_id", "user_id"])
    due = truth[(truth.days_to_due >= 2) & (truth.days_to_due <= 4) & (truth.response != "blocked")]
    assert len(due) > 50
    assert 0.05 <= due.p_accept.mean() <= 0.25
    # The true probabilities are what happened: acceptances (cancelled ones included) match.
    sent = truth[truth.response != "blocked"]
    took = sent.response.isin(["accepted", "cancelled"])
    z = (took.sum() - sent.p_accept.sum()) / np.sqrt((sent.p_accept * (1 - sent.p_accept)).sum())
    assert abs(z) < 3, z
    # Shoppers with a need close by accept far more often than those without one.
    assert (
        sent[sent.days_to_due <= 7].p_accept.mean()
        > 2 * sent[np.isinf(sent.days_to_due)].p_accept.mean()
    )


def test_withdrawn_consent_means_the_offer_never_reaches_the_shopper(campaign):
    offers = campaign["offers"].to_pandas()
    c = campaign["consents"].to_pandas()
    sent_at = offers.sent_at.iloc[0]
    before = c[c.changed_at < sent_at].sort_values("changed_at")
    state = before.groupby(["user_id", "purpose"]).granted.last()
    withdrawn = set(state[~state].index.get_level_values("user_id"))
    assert withdrawn
    blocked = set(offers[offers.response == "blocked"].user_id)
    assert blocked == withdrawn & set(offers.user_id)
    assert offers[offers.response == "blocked"].responded_at.isna().all()


def test_an_accepted_offer_is_an_express_order_on_the_suggested_date(campaign, plain):
    offers = campaign["offers"].to_pandas()
    accepted = offers[offers.response == "accepted"]
    assert len(accepted) > 20 and accepted.order_id.notna().all()
    assert offers[offers.response != "accepted"].order_id.isna().all()
    orders = campaign["orders"].to_pandas().set_index("order_id")
    placed = orders.loc[accepted.order_id.astype(int)]
    assert (placed.ordered_at.dt.date.to_numpy() == accepted.suggested_date.to_numpy()).all()
    assert (placed.user_id.to_numpy() == accepted.user_id.to_numpy()).all()
    assert (
        accepted.responded_at < pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=OFFER_DAY + 1)
    ).all()
    ships = campaign["shipments"].to_pandas()
    mine = ships[ships.order_id.isin(accepted.order_id)]
    assert len(mine) and (mine.carrier == "swift").all()
    # A cancelled acceptance places no order; it was cancelled before the suggested date.
    cancelled = offers[offers.response == "cancelled"]
    assert (cancelled.responded_at.dt.date < cancelled.suggested_date).all()
    # The campaign changed the world only from the offer day on.
    day = pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=OFFER_DAY)
    a = campaign["orders"].to_pandas()
    b = plain["orders"].to_pandas()
    pd.testing.assert_frame_equal(
        a[a.ordered_at < day].reset_index(drop=True), b[b.ordered_at < day].reset_index(drop=True)
    )


def test_an_offer_pulls_the_due_replenishment_forward_and_its_cycle_runs_from_there(campaign):
    """The offer's order buys the shopper's replenishments falling due within a week, and their
    cycles start again from that order (no extra purchase at the old due date)."""
    offers = campaign["offers"].to_pandas()
    accepted = offers[offers.response == "accepted"]
    orders = campaign["orders"].to_pandas()[["order_id", "user_id", "ordered_at"]]
    items = campaign["order_items"].to_pandas().merge(campaign["products"].to_pandas(), on="sku")
    bought = items.merge(orders, on="order_id")
    cycles = campaign["truth_cycles"].to_pandas()[["user_id", "category"]]
    pulled = bought[bought.order_id.isin(accepted.order_id)].merge(
        cycles, on=["user_id", "category"]
    )
    assert len(pulled) > 10  # replenishments bought in the offers' orders
    # In the world's own state, right after: every need due within the week restarted that day.
    world = World(CFG, policy=_express_to_all)
    list(world.run(until=OFFER_DAY + 4))
    shop = world._shop
    log = shop.offers.cols
    took = log["user"][log["order"] >= 0]
    order_day = log["suggested"][log["order"] >= 0]
    assert took.size == len(accepted)
    renewed = shop.st.last_renewal[took] == order_day[:, None]
    assert renewed.sum() >= len(pulled.drop_duplicates(["user_id", "category"]))
    # Nothing still falls due inside the pulled week from before the order.
    pull = shop.cfg.offers.pull_days
    stale = shop.st.need[took] & (shop.st.last_renewal[took] < order_day[:, None])
    stale &= shop.st.next_due[took] <= order_day[:, None] + pull
    assert not stale.any()


def test_the_oracle_is_certain_of_an_accepted_offers_order(campaign):
    offers = campaign["offers"].to_pandas()
    accepted = offers[offers.response == "accepted"]
    oracle = campaign["truth_oracle"].to_pandas()
    snap = pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=42)
    at = oracle[(oracle.snapshot_at == snap) & oracle.user_id.isin(accepted.user_id)]
    assert len(at) and (at.p_7d == 1).all() and (at.p_30d == 1).all()


@pytest.mark.parametrize(
    ("offers", "message"),
    [
        ({"user_id": ["nobody"]}, "offers lack column"),
        (
            {
                "user_id": ["nobody"],
                "incentive": ["discount"],
                "discount_rate": [0.1],
                "suggested_date": ["2025-03-20"],
            },
            "user_id 'nobody' is not a shopper",
        ),
        (
            {
                "user_id": ["u0000001"],
                "incentive": ["gift"],
                "discount_rate": [0.1],
                "suggested_date": ["2025-03-20"],
            },
            "incentive 'gift' is not one of discount, express_upgrade",
        ),
        (
            {
                "user_id": ["u0000001"],
                "incentive": ["discount"],
                "discount_rate": [1.5],
                "suggested_date": ["2025-03-20"],
            },
            "discount_rate 1.5 must lie in",
        ),
        (
            {
                "user_id": ["u0000001"],
                "incentive": ["discount"],
                "discount_rate": [0.1],
                "suggested_date": ["2025-02-02"],
            },
            "row 1: suggested_date 2025-02-02 must be a date after the day",
        ),
    ],
)
def test_malformed_offers_are_refused_with_what_is_wrong(offers, message):
    cfg = dataclasses.replace(CFG, users=50, days=10)
    with pytest.raises(OfferError, match=message):
        list(World(cfg, policy=lambda view: offers if view.day == 2 else []).run())


def test_a_campaign_changes_only_the_shoppers_it_touches(plain):
    """Each shopper's draws are their own: offers to a few shoppers leave every other shopper's
    orders as they were (they meet only through shared stock and dispatch capacity, which a
    small campaign on this world does not strain)."""
    users = plain["users"].to_pandas()
    day = pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=OFFER_DAY)
    chosen = users[users.signup_at < day].user_id.iloc[::40].tolist()[:30]

    after = _tables(World(CFG, policy=_discount_once(chosen, 0.2)).run())
    offers = after["offers"].to_pandas()
    assert offers.response.isin(["accepted", "cancelled"]).any()
    cols = ["user_id", "ordered_at", "amount", "n_items", "channel"]

    def orders(t, mine: bool):
        o = t.to_pandas()
        o = o[o.user_id.isin(chosen) == mine][cols]
        return o.sort_values(cols[:2]).reset_index(drop=True)

    pd.testing.assert_frame_equal(orders(after["orders"], False), orders(plain["orders"], False))
    # The chosen shoppers who accepted ordered on the suggested date, a change of their own.
    assert not orders(after["orders"], True).equals(orders(plain["orders"], True))


def test_a_discount_offer_stockpiles_what_its_order_buys(plain):
    """Bought with a discount, a replenishment lasts longer (like one bought with a coupon): the
    cycle runs on from the offer's order with a gap STOCKPILE_GAP times the shopper's own."""
    from cadence.world._params import STOCKPILE_GAP

    needy = set(plain["truth_cycles"].to_pandas().user_id)
    users = plain["users"].to_pandas()
    day = pd.Timestamp(CFG.start, tz="UTC") + pd.Timedelta(days=OFFER_DAY)
    chosen = [u for u in users[users.signup_at < day].user_id if u in needy]

    world = World(CFG, policy=_discount_once(chosen, 0.3))
    list(world.run(until=OFFER_DAY + 3))
    shop = world._shop
    log = shop.offers.cols
    took = log["user"][log["order"] >= 0]
    assert took.size > 10
    renewed = shop.st.last_renewal[took] == OFFER_DAY + 2
    assert renewed.sum() > 5
    ratio = shop.st.gap_mean[took][renewed] / shop.pop.cycle_mean[took][renewed]
    np.testing.assert_allclose(ratio, STOCKPILE_GAP)


def test_the_shipped_response_weights_are_the_response_functions_defaults():
    from cadence.flows.conf import Conf, default_folder
    from cadence.flows.steps.world import world_config

    shipped = world_config(Conf(default_folder()).world).offers
    assert shipped == ResponseParams()
