"""The day-by-day simulation of the shop, vectorised across shoppers.

Each simulated day runs the same steps in the same order for every shopper (the oracle in
`_oracle.py` mirrors steps 1-5 exactly):

0. with a policy (`World`), offers go out and are answered; accepted ones for today order;
1. late or damaged deliveries that arrived yesterday count against the shop;
2. coupons expire; on campaign days new ones are issued;
3. lapsed shoppers may come back (with an order); then some active shoppers lapse, silently;
4. replenishment needs may end; due replenishments are bought here by active shoppers, or
   skipped and bought elsewhere, and the cycle runs on either way;
5. impulse orders, from a hidden interest state that browsing and carts reveal;
6. orders are routed by the legacy rule, shipped, delivered, sometimes returned; after each
   order the shopper may lapse;
7. sessions, searches, cart events, address changes and service contacts are emitted;
8. the interest state moves on.

`simulate` yields ``(table, pyarrow.Table)`` batches, raw tables and `truth_*` tables; it writes
nothing itself. The set-up (population, catalogue, nodes, weather, the state at the start) draws
from one generator seeded by the world's seed; every draw of a day comes from `_random.Streams`,
keyed by purpose and shopper.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from cadence.ingest import _tables as T
from cadence.world import _behaviour as B
from cadence.world import _params as P
from cadence.world import _random as X
from cadence.world._dispatch import Dispatch
from cadence.world._emit import Batches, Lookup, Nullable, labels, to_table
from cadence.world._geo import make_geography, make_nodes
from cadence.world._logistics import (
    billed_weight,
    damage_prob,
    delivery_days,
    legacy_carrier,
    route_legacy,
    shipping_cost,
    zone_of,
)
from cadence.world._offers import (
    SEND_HOUR,
    OfferError,
    OfferLog,
    ResponseParams,
    read_offers,
    respond,
)
from cadence.world._oracle import OracleInputs, oracle_probabilities
from cadence.world._population import make_catalogue, make_population, pick_sku
from cadence.world._random import Streams, occurrence
from cadence.world._static import static_tables, truth_latent

DAY_S = 86400
US = 1_000_000
FLUSH_EVERY = 28


@dataclass(frozen=True)
class WorldConfig:
    users: int = 20_000
    days: int = 546
    seed: int = 7
    start: dt.date = dt.date(2025, 1, 1)
    truth_every_days: int = 7
    horizons_days: tuple[int, ...] = (7, 30)
    offers: ResponseParams = field(default_factory=ResponseParams)

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be at least 1, got {self.users}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if self.truth_every_days < 1:
            raise ValueError(f"truth every_days must be at least 1, got {self.truth_every_days}")
        if not self.horizons_days or min(self.horizons_days) < 1:
            raise ValueError(f"horizons must be positive days, got {self.horizons_days}")

    @property
    def start_us(self) -> int:
        return int(dt.datetime(*self.start.timetuple()[:3], tzinfo=dt.UTC).timestamp()) * US

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * DAY_S * US


@dataclass
class _State:
    """Everything the simulator knows about each shopper at the start of a day."""

    alive: np.ndarray  # active at the shop; False while lapsed
    interested: np.ndarray
    interest_cat: np.ndarray
    coupon: np.ndarray
    coupon_until: np.ndarray  # first day the current coupon no longer works
    coupon_row: np.ndarray
    last_order_day: np.ndarray  # float, -inf before the first order
    n_orders: np.ndarray
    n_bad: np.ndarray
    need: np.ndarray  # (users, cycle cats)
    last_renewal: np.ndarray  # (users, cycle cats), day of the last replenishment
    next_due: np.ndarray  # (users, cycle cats)
    gap_mean: np.ndarray  # (users, cycle cats), the mean of the gap running now
    cart_sku: np.ndarray  # item waiting in the cart, -1 for none
    lat: np.ndarray
    lon: np.ndarray
    address: np.ndarray  # the address id's number: the household's, or a move's new one
    bad_on: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))


def simulate(
    cfg: WorldConfig, on_day: Callable[[int], None] | None = None, policy=None
) -> Iterator[tuple[str, pa.Table]]:
    """Run the shop for `cfg.days` days, yielding `(table, batch)` as they are made. `policy`, if
    given, is called each day with what the shop can see and returns offers (`world.World`)."""
    yield from _Shop(cfg).run(0, cfg.days, on_day, policy, keep=policy is not None)


class _Shop:
    """One simulated shop: its fixed world, its shoppers' state, and the day's steps."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        # The set-up's draws; every day's come from keyed streams (`_random.Streams`).
        rng = np.random.default_rng(cfg.seed)
        self.geo = make_geography(rng)
        self.cat = make_catalogue(rng)
        self.pop = make_population(rng, self.geo, self.cat, cfg.users, cfg.days)
        expected_orders = _expected_daily_orders(self.pop)
        self.nodes = nodes = make_nodes(self.geo, rng, expected_orders.sum())
        horizon = max(cfg.horizons_days)
        self.mult = B.calendar(cfg.start, cfg.days + horizon)
        self.storm = _weather(rng, cfg.days + horizon)
        self.ids = _Ids(cfg.users, self.cat, nodes)

        # Stock: regional warehouses carry everything, forward warehouses and stores the best
        # sellers, each restocked weekly to about five days of its share of the demand.
        rank = np.tile(np.arange(P.SKUS_PER_CATEGORY), P.N_CAT)
        self.carried = np.ones((nodes.kind.size, rank.size), dtype=bool)
        self.carried[nodes.kind == 1] = rank < 10
        self.carried[nodes.kind == 2] = rank < 4
        share = nodes.capacity / nodes.capacity[nodes.kind == 0].sum()
        units = _expected_daily_units(self.pop)
        sku_demand = units[self.cat.category] * self.cat.popularity * 1.3
        target = np.ceil(5 * share[:, None] * sku_demand[None, :]) + 3
        self.target = np.where(self.carried, target, 0).astype(np.int64)
        self.stock = self.target.copy()
        self.restock_weekday = np.arange(nodes.kind.size) % 7
        self.dispatch = Dispatch(nodes.kind, nodes.capacity, cfg.start_us)

        self.st = _initial_state(rng, self.pop, cfg)
        self.out = Batches(self.ids, self.geo, nodes.kind.size, self.cat.category.size, cfg.start)
        self.coupons = _CouponLog()
        self.consent = _Consents(cfg, self.pop)
        self.offers = OfferLog()
        self.fatigue = np.zeros(cfg.users)
        self.pending: defaultdict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        self.history: defaultdict[str, list[pa.Table]] = defaultdict(list)
        self.counters: defaultdict[str, int] = defaultdict(int)
        self.oracles: deque[Future[pa.Table]] = deque()

    def run(
        self, first: int, until: int, on_day, policy, *, keep: bool
    ) -> Iterator[tuple[str, pa.Table]]:
        """Days `first` to `until` (exclusive): everything made on them, flushed at `until`;
        the static tables before day 0 and the end-of-data tables after the last day. `keep`
        keeps the raw tables made, for a policy to see (now or after a save)."""
        if first == 0:
            for name, table in (
                *static_tables(self.cfg, self.geo, self.cat, self.pop, self.nodes, self.ids),
                ("dispatch_waves", self.dispatch.table(self.out.lookups)),
            ):
                if keep:
                    self.history[name].append(table)
                yield name, table
            weather = _weather_table(self.cfg, self.storm)
            if keep:
                self.history["weather"].append(weather)
            yield "weather", weather
        self.pool = ThreadPoolExecutor(max_workers=1)
        try:
            for name, table in self._run(first, until, on_day, policy):
                if keep and not name.startswith("truth_"):
                    self.history[name].append(table)
                yield name, table
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            del self.pool
        if until == self.cfg.days:
            yield "coupons", self.coupons.table(self.ids)
            yield "consents", self.consent.table(self.ids)
            yield "offers", self.offers.table(self.ids, np.datetime64(self.cfg.start, "D"))
            yield "truth_offers", self.offers.truth(self.ids)
            yield "truth_latent", truth_latent(self.pop, self.st.alive, self.ids)
            yield "truth_cycles", _cycles_table(self.pop, self.st, self.ids)

    def _run(self, first, until, on_day, policy) -> Iterator[tuple[str, pa.Table]]:
        n = self.cfg.users
        k = len(P.CYCLE_CATS)
        for day in range(first, until):
            day_us = self.cfg.start_us + day * DAY_S * US
            active = self.pop.active_day <= day
            self.R = R = Streams(self.cfg.seed, day)

            # 0. Offers: the policy sees what the shop has seen so far and sends some today.
            self.fatigue *= np.exp(-1 / 30)
            if policy is not None:
                from cadence.world._replay import ShopView

                sent = policy(ShopView(self, day))
                if sent is not None and len(sent):
                    self._send(day, day_us, sent)
            offered, offer_rows = self._due_offers(day)

            # 1. Bad experiences delivered yesterday.
            for users in self.st.bad_on.pop(day, []):
                np.add.at(self.st.n_bad, users, 1)

            # 2. Coupons: expiry, then campaigns.
            self.st.coupon &= self.st.coupon_until > day
            if B.is_campaign_day(day):
                since = day - self.st.last_order_day
                issue = active & ~self.st.coupon & (R.vec("coupon", n) < B.issue_prob(since))
                who = np.flatnonzero(issue)
                self.st.coupon[who] = True
                self.st.coupon_until[who] = day + P.COUPON_DAYS
                self.st.coupon_row[who] = self.coupons.issue(who, day_us)

            # 3. Lapsed shoppers may come back, with an order; then active ones may lapse.
            back = (
                ~self.st.alive
                & active
                & (
                    R.vec("winback", n)
                    < B.winback_prob(
                        self.pop.winback,
                        self.st.coupon,
                        self.pop.coupon_response,
                        self.mult[day],
                    )
                )
            )
            churn = (
                self.st.alive
                & active
                & (R.vec("churn", n) < B.churn_prob(self.pop.churn_base, self.st.n_bad))
            )
            self.st.alive = (self.st.alive & ~churn) | back
            # A shopper who accepted an offer for today orders, and is back if they had lapsed.
            self.st.alive[offered] = True
            buyer = self.st.alive & active

            # A discount on today's order, like a coupon in hand, makes a stockpile of what it
            # buys.
            self.deal = self.st.coupon.copy()
            self.deal[offered[self.offers.cols["rate"][offer_rows] > 0]] = True

            # 4. Replenishment: the need may end; what falls due today is bought here (an
            # active shopper's loyal share) or skipped and bought elsewhere; the cycle runs on
            # from today either way, a stockpile (bought with a coupon) lasting longer.
            self.st.need &= R.vec("need_end", (n, k)) >= P.NEED_END_HAZARD
            due = self.st.need & (self.st.next_due == day) & active[:, None]
            du, dc = np.nonzero(due)
            here = buyer[du] & (R.vec("loyal", (n, k))[du, dc] < self.pop.loyalty[du])
            if offered.size:
                # An offer's order buys what falls due today and within `pull_days`.
                is_offered = np.zeros(n, dtype=bool)
                is_offered[offered] = True
                here |= is_offered[du]
                soon = self.st.need[offered] & (self.st.next_due[offered] > day)
                soon &= self.st.next_due[offered] <= day + self.cfg.offers.pull_days
                rows, pc = np.nonzero(soon)
                du, dc = np.concatenate([du, offered[rows]]), np.concatenate([dc, pc])
                here = np.concatenate([here, np.ones(rows.size, dtype=bool)])
            self._renew(day, du, dc, here, "gap.due")
            du, dc = du[here], dc[here]

            # 5. Impulse orders.
            p_imp = B.impulse_prob(
                self.pop.engagement,
                self.st.interested,
                self.st.coupon,
                self.pop.coupon_response,
                self.mult[day],
            )
            impulse = (buyer & ~back & (R.vec("impulse", n) < p_imp)) | back
            # An offer's order with nothing due holds what the incentive tempts them to.
            impulse[offered[~np.isin(offered, du)]] = True

            # 6. Orders, routing, shipments.
            ordering = impulse.copy()
            ordering[du] = True
            ordering[offered] = True
            order_users = np.flatnonzero(ordering)
            if order_users.size:
                du, dc = self._bundle(day, order_users, du, dc)
                self._place_orders(day, day_us, order_users, du, dc, impulse, offered, offer_rows)
                self.st.n_orders[order_users] += 1
                lapse = R.vec("lapse", n)[order_users] < B.lapse_after_order_prob(
                    self.pop.lapse_after_order[order_users], self.st.n_orders[order_users]
                )
                self.st.alive[order_users[lapse]] = False
            # 7. What shoppers leave behind while browsing.
            self._browse(day, day_us, active)

            # 8. Interest moves on; an impulse purchase satisfies it.
            on = R.vec("interest_on", n) < B.interest_on_prob(
                self.pop.engagement, self.st.coupon, self.pop.coupon_response
            )
            off = R.vec("interest_off", n) < P.INTEREST_OFF
            newly = ~self.st.interested & on
            self.st.interest_cat[newly] = _taste_pick(
                R.vec("interest_cat", n)[newly], self.pop.taste[newly]
            )
            self.st.interested = np.where(self.st.interested, ~off, on) & ~impulse & self.st.alive

            # Inventory: record the day, then restock the nodes whose delivery day it is tomorrow.
            self._inventory_day(day)

            if (day + 1) % self.cfg.truth_every_days == 0:
                # The oracle runs beside the simulation on a frozen copy of today's state.
                snapshot = _freeze(self.st)
                self.oracles.append(
                    self.pool.submit(
                        _oracle_table,
                        self.cfg,
                        day + 1,
                        snapshot,
                        self.pop,
                        self.mult,
                        self.ids,
                        self._pending_day(),
                    )
                )
            # With a policy, the shop's tables are flushed daily, for the policy to see.
            last = day + 1 == until
            if (day + 1) % FLUSH_EVERY == 0 or last or policy is not None:
                yield from self.out.flush()
                while self.oracles and (self.oracles[0].done() or last):
                    yield "truth_oracle", self.oracles.popleft().result()
            if on_day is not None:
                on_day(day)

    def _send(self, day, day_us, sent) -> None:
        """Offers sent today: each shopper's answer is drawn now, from streams keyed by shopper;
        an accepted one (not cancelled) becomes an order on its suggested date."""
        o = read_offers(sent, self.user_index, day, np.datetime64(self.cfg.start, "D"))
        u = o["user"]
        if (self.pop.active_day[u] > day).any():
            bad = self.ids.user[int(u[np.argmax(self.pop.active_day[u] > day)])].as_py()
            raise OfferError(f"offers: user_id {bad!r} has not signed up by this day")
        if (o["suggested"] >= self.cfg.days).any():
            raise OfferError("offers: suggested_date must come before the world's end")
        sent_us = day_us + SEND_HOUR * 3600 * US
        blocked = self.consent.withdrawn(u, sent_us)
        due = np.where(self.st.need[u], self.st.next_due[u] - day, np.inf).min(axis=1)
        p = respond(
            self.cfg.offers,
            days_to_due=due,
            coupon_response=self.pop.coupon_response[u],
            discount_rate=o["rate"],
            express=o["express"],
            fatigue=self.fatigue[u],
            lapsed=~self.st.alive[u],
        )
        p = np.where(blocked, 0.0, p)
        draw = np.column_stack(
            [self.R.keyed(f"offer.{w}", u) for w in ("accept", "cancel", "when")]
        )
        accept = draw[:, 0] < p
        cancel = accept & (draw[:, 1] < self.cfg.offers.cancel)
        # Answered within a few hours; a cancellation comes before the suggested date.
        accepted_us = sent_us + (draw[:, 2] * 8 * 3600 * US).astype(np.int64)
        order_day_us = self.cfg.start_us + o["suggested"] * DAY_S * US
        cancelled_us = accepted_us + (
            draw[:, 1] / max(self.cfg.offers.cancel, 1e-12) * (order_day_us - accepted_us)
        ).astype(np.int64)
        self.fatigue[u[~blocked]] += 1
        rows = self.offers.add(
            user=u,
            sent_us=np.full(u.size, sent_us),
            express=o["express"],
            rate=o["rate"],
            suggested=o["suggested"],
            blocked=blocked,
            accepted_us=np.where(accept, accepted_us, -1),
            cancelled_us=np.where(cancel, cancelled_us, -1),
            p_accept=p,
            days_to_due=due,
            lapsed=~self.st.alive[u],
        )
        go = accept & ~cancel
        for d in np.unique(o["suggested"][go]):
            mine = go & (o["suggested"] == d)
            self.pending[int(d)].append((u[mine], rows[mine]))

    def _due_offers(self, day) -> tuple[np.ndarray, np.ndarray]:
        """Shoppers whose accepted offer is for today, and its row in the offers log; a
        shopper with two offers for the day places one order for both."""
        parts = self.pending.pop(day, [])
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        users = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        return users, rows

    def _pending_day(self) -> np.ndarray:
        """Per shopper, the first day an accepted offer will order on (inf: none)."""
        out = np.full(self.cfg.users, np.inf)
        for d, parts in self.pending.items():
            for users, _ in parts:
                out[users] = np.minimum(out[users], d)
        return out

    @property
    def user_index(self) -> dict[str, int]:
        if not hasattr(self, "_user_index"):
            self._user_index = {u: i for i, u in enumerate(self.ids.user.to_pylist())}
        return self._user_index

    def _new_ids(self, table: str, n: int) -> np.ndarray:
        """The next `n` ids of a table, numbered from 1 in the order rows are made."""
        first = self.counters[table] + 1
        self.counters[table] += int(n)
        return np.arange(first, first + int(n))

    def _bundle(self, day, order_users, du, dc) -> tuple[np.ndarray, np.ndarray]:
        """Replenishments due within `BUNDLE_DAYS` join today's order (with `BUNDLE_PROB`), and
        their cycles start again from it. Only shoppers who order today bundle, so a day without
        an order runs as if bundling did not exist: the oracle's no-order paths are unchanged,
        and its renewal state (the last purchase, the gap drawn then) stays exact."""
        nd = self.st.next_due[order_users]
        soon = self.st.need[order_users] & (nd > day) & (nd <= day + P.BUNDLE_DAYS)
        soon &= self.R.vec("bundle", self.st.need.shape)[order_users] < P.BUNDLE_PROB
        rows, bc = np.nonzero(soon)
        if not rows.size:
            return du, dc
        bu = order_users[rows]
        self._renew(day, bu, bc, np.ones(bu.size, dtype=bool), "gap.bundle")
        return np.concatenate([du, bu]), np.concatenate([dc, bc])

    def _renew(self, day, users, cats, here, purpose) -> None:
        """Replenishments of (users, cats) happen today, `here` at this shop: the next gap is
        drawn around the shopper's own cycle, longer for a stockpile bought with a coupon or an
        offer's discount."""
        self.st.last_renewal[users, cats] = day
        stock = here & self.deal[users]
        mean = self.pop.cycle_mean[users, cats] * np.where(stock, P.STOCKPILE_GAP, 1.0)
        self.st.gap_mean[users, cats] = mean
        u = self.R.vec(purpose, self.st.need.shape)[users, cats]
        self.st.next_due[users, cats] = day + B.sample_gap(u, mean, B.gap_std(mean, cats))

    def _place_orders(self, day, day_us, order_users, du, dc, impulse, offered, offer_rows) -> None:
        n_o = order_users.size
        slot = np.full(self.pop.city.size, -1)
        slot[order_users] = np.arange(n_o)
        R = self.R
        n = self.cfg.users
        k = len(P.CYCLE_CATS)
        t_order = (
            day_us
            + _time_of_day(R.vec("order.time", n)[order_users], self.pop.peak_hour[order_users])
            * US
        )
        order_id = self._new_ids("order", n_o)

        # Lines: replenishments due today, the impulse item (the one waiting in the cart, if any),
        # and now and then an add-on from the shopper's tastes.
        rep_sku = np.where(
            R.vec("order.favourite", (n, k))[du, dc] < 0.9,
            self.pop.favourite[du, dc],
            pick_sku(R.vec("order.rep_sku", (n, k))[du, dc], self.cat, P.CYCLE_IDX[dc]),
        )
        rep_qty = X.choice(R.vec("order.rep_qty", (n, k))[du, dc], np.arange(1, 4), P.REPLENISH_QTY)
        rep_qty += self.deal[du]  # a stockpile
        imp_users = order_users[impulse[order_users]]
        imp_cat = np.where(
            self.st.interested[imp_users],
            self.st.interest_cat[imp_users],
            _taste_pick(R.vec("order.imp_cat", n)[imp_users], self.pop.taste[imp_users]),
        )
        from_cart = self.st.cart_sku[imp_users] >= 0
        imp_sku = np.where(
            from_cart,
            self.st.cart_sku[imp_users],
            pick_sku(R.vec("order.imp_sku", n)[imp_users], self.cat, imp_cat),
        )
        self.st.cart_sku[imp_users] = -1
        # An accepted offer's incentive: its discount, a free express upgrade, more add-ons.
        rate = np.zeros(n_o)
        express = np.zeros(n_o, dtype=bool)
        lines = np.full(n_o, P.ADDON_LINES)
        if offered.size:
            at = slot[offered]
            np.maximum.at(rate, at, self.offers.cols["rate"][offer_rows])
            express[at] |= self.offers.cols["express"][offer_rows]
            lines[at] *= 1 + self.cfg.offers.addon_lift
        add_users = np.repeat(order_users, X.poisson(R.vec("order.addons", n)[order_users], lines))
        add_k = occurrence(add_users)
        add_cat = _taste_pick(R.keyed("order.add_cat", add_users, add_k), self.pop.taste[add_users])
        # Nobody adds diapers without a baby: an add-on from a replenished category the shopper
        # has no need of is left out (the need's own purchases come due or are bundled).
        cyc = CYCLE_OF[add_cat]
        keep = (cyc < 0) | self.pop.needs[add_users, np.maximum(cyc, 0)]
        add_users, add_cat, add_k = add_users[keep], add_cat[keep], add_k[keep]
        add_sku = pick_sku(R.keyed("order.add_sku", add_users, add_k), self.cat, add_cat)
        add_qty = X.choice(R.keyed("order.add_qty", add_users, add_k), np.arange(1, 3), P.ADDON_QTY)
        item_user = np.concatenate([du, imp_users, add_users])
        item_sku = np.concatenate([rep_sku, imp_sku, add_sku])
        item_qty = np.concatenate([rep_qty, np.ones(imp_users.size, dtype=np.int64), add_qty])
        item_cart = np.concatenate(
            [np.zeros(du.size, bool), from_cart, np.zeros(add_users.size, bool)]
        )
        o = np.argsort(slot[item_user], kind="stable")
        item_order, item_sku, item_qty, item_cart = (
            slot[item_user][o],
            item_sku[o],
            item_qty[o],
            item_cart[o],
        )
        first = np.r_[True, item_order[1:] != item_order[:-1]]
        line = (
            np.arange(item_order.size)
            - np.maximum.accumulate(np.where(first, np.arange(first.size), 0))
            + 1
        )

        # Channel: stores sell over the counter and ship nothing; the rest follows the device.
        ucity = self.pop.city[order_users]
        has_store = np.isin(ucity, self.nodes.city[self.nodes.kind == 2])
        dev = self.pop.device[order_users]
        u = R.vec("order.channel", n)[order_users]
        channel = np.select(
            [has_store & (u < 0.05), dev == 2, dev == 3, u < 0.88],
            [3, 1, 2, 0],
            default=np.where(u < 0.94, 1, 2),
        )
        # An offer's order is placed online, to be shipped.
        channel = np.where(
            (rate > 0) | express | (lines > P.ADDON_LINES),
            np.where(channel == 3, 0, channel),
            channel,
        )
        coupon = self.st.coupon[order_users]
        price = self.cat.price[item_sku]
        gross = np.bincount(item_order, weights=price * item_qty, minlength=n_o)
        discount = np.round(gross * np.maximum(np.where(coupon, P.COUPON_DISCOUNT, 0.0), rate), 2)
        amount = np.round(gross - discount, 2)
        red = order_users[coupon]
        self.coupons.redeem(self.st.coupon_row[red], t_order[coupon], order_id[coupon])
        self.st.coupon[red] = False
        self.st.last_order_day[order_users] = day
        if offered.size:
            self.offers.placed(offer_rows, order_id[slot[offered]], t_order[slot[offered]])
        n_items = np.bincount(item_order, minlength=n_o)
        self.out.add(
            "orders",
            order_id=order_id,
            user_id=Lookup("user", order_users),
            ordered_at=t_order,
            channel=Lookup("channel", channel),
            n_items=n_items,
            amount=amount,
            discount=discount,
        )

        # Route the shipped lines.
        shipped = channel[item_order] != 3
        s_idx = np.flatnonzero(shipped)
        item_node = np.full(item_order.size, -1)
        ship_id = np.full(item_order.size, -1, dtype=np.int64)
        if s_idx.size:
            so = item_order[s_idx]
            item_node[s_idx] = route_legacy(
                tuple(R.vec(f"order.route_{w}", n)[order_users] for w in ("store", "pick", "alt")),
                self.geo,
                self.nodes,
                self.stock,
                ucity,
                self.st.lat[order_users],
                self.st.lon[order_users],
                so,
                item_sku[s_idx],
                item_qty[s_idx],
            )
            ok = s_idx[item_node[s_idx] >= 0]
            np.subtract.at(self.stock, (item_node[ok], item_sku[ok]), item_qty[ok])
            self.out.note_shipped(item_node[ok], item_sku[ok], item_qty[ok])
            ship_id[ok] = self._ship(
                day,
                ok,
                item_order,
                item_sku,
                item_qty,
                item_node,
                order_id,
                order_users,
                t_order,
                express,
            )
        cancelled = shipped & (item_node < 0)
        self.out.add(
            "order_items",
            order_id=order_id[item_order],
            line=line,
            sku=Lookup("sku", item_sku),
            quantity=item_qty,
            unit_price=price,
            shipment_id=Nullable(ship_id, ship_id < 0),
            cancelled=cancelled,
        )

        # The order's own visit: a session just before it and the cart lines it checked out,
        # never before the order's own midnight (UTC): a visit on the evening before would let
        # a snapshot at that midnight see an order coming that it cannot know of.
        online = channel != 3
        ou = order_users[online]
        lead = X.integers(R.vec("order.visit_lead", n)[ou], 120, 1500)
        sess_t = np.maximum(t_order[online] - lead * US, day_us)
        first_cat = self.cat.category[item_sku[first]][online]
        self._add_sessions("order.visit", ou, sess_t, first_cat, pages_mean=4.0)
        lines = np.flatnonzero(online[item_order])
        new_lines = lines[~item_cart[lines]]
        line_users = order_users[item_order[new_lines]]
        line_lead = X.integers(R.keyed("order.cart_lead", line_users, line[new_lines]), 30, 110)
        add_t = np.maximum(t_order[item_order[new_lines]] - line_lead * US, day_us)
        self._cart(
            order_users[item_order[new_lines]],
            add_t,
            item_sku[new_lines],
            item_qty[new_lines],
            "add",
        )
        self._cart(
            order_users[item_order[lines]],
            t_order[item_order[lines]],
            item_sku[lines],
            item_qty[lines],
            "purchase",
        )

    def _ship(
        self,
        day,
        lines,
        item_order,
        item_sku,
        item_qty,
        item_node,
        order_id,
        order_users,
        t_order,
        express,
    ) -> np.ndarray:
        """Group routed lines into shipments, time and price them; returns the shipment per line."""
        key = item_order[lines].astype(np.int64) * self.nodes.kind.size + item_node[lines]
        uniq, inv = np.unique(key, return_inverse=True)
        n_s = uniq.size
        s_order = (uniq // self.nodes.kind.size).astype(np.int64)
        s_node = (uniq % self.nodes.kind.size).astype(np.int64)
        sid = self._new_ids("shipment", n_s)
        weight = np.round(
            np.bincount(
                inv, weights=self.cat.weight[item_sku[lines]] * item_qty[lines], minlength=n_s
            ),
            3,
        )
        volume = np.bincount(
            inv, weights=self.cat.volume[item_sku[lines]] * item_qty[lines], minlength=n_s
        )
        fragile = np.bincount(inv, weights=self.cat.fragile[item_sku[lines]], minlength=n_s) > 0
        users = order_users[s_order]
        dest = self.pop.city[users]
        zone = zone_of(self.geo, self.nodes.city[s_node], dest)
        R = self.R
        # A parcel's draws are keyed by its shopper and its place among their parcels today.
        nth = occurrence(users)
        carrier = np.where(
            express[s_order], 0, legacy_carrier(R.keyed("ship.carrier", users, nth), zone)
        )
        dist = geo_dist = _dist(
            self.st.lat[users], self.st.lon[users], self.nodes.lat[s_node], self.nodes.lon[s_node]
        )
        billed = billed_weight(weight, volume)
        cost = shipping_cost(zone, carrier, billed, self.nodes.kind[s_node])
        # Each parcel leaves with a dispatch wave of its node; the carrier collects after it.
        wave = self.dispatch.assign(day, s_node, t_order[s_order])
        wave_at = self.dispatch.cutoff_us(s_node, wave)
        handover = P.HANDOVER_HOURS * X.lognormal(R.keyed("ship.handover", users, nth), 0, 0.3)
        shipped_at = wave_at + (handover * 3600 * US).astype(np.int64)
        region = self.geo.city_region[dest]
        ship_day = np.minimum(
            (shipped_at - self.cfg.start_us) // (DAY_S * US), self.storm.shape[0] - 1
        )
        stormy = self.storm[ship_day, region]
        transit = delivery_days(
            zone,
            carrier,
            geo_dist,
            stormy,
            X.lognormal(R.keyed("ship.transit", users, nth), 0, 0.2),
        )
        delivered = shipped_at + (transit * DAY_S * US).astype(np.int64)
        day0 = self.cfg.start_us + day * DAY_S * US
        promised = day0 + (P.PROMISE_DAYS[zone] + 1) * DAY_S * US
        late = delivered > promised
        damaged = R.keyed("ship.damage", users, nth) < damage_prob(zone, carrier, fragile, stormy)
        arrived = delivered < self.cfg.end_us
        self.out.add(
            "shipments",
            shipment_id=sid,
            order_id=order_id[s_order],
            node_id=Lookup("node", s_node),
            carrier=Lookup("carrier", carrier),
            zone=Lookup("zone", zone),
            distance_km=np.round(dist, 3),
            actual_weight_kg=weight,
            volume_cm3=volume,
            billed_weight_kg=billed,
            cost=cost,
            wave_at=Nullable(wave_at, wave_at >= self.cfg.end_us),
            shipped_at=Nullable(shipped_at, shipped_at >= self.cfg.end_us),
            promised_at=promised,
            delivered_at=Nullable(delivered, ~arrived),
            late=Nullable(late, ~arrived),
            damaged=Nullable(damaged, ~arrived),
        )

        # A bad delivery weighs on the shopper from the day after it arrives.
        bad = late | damaged
        arrive_day = (delivered - self.cfg.start_us) // (DAY_S * US)
        for d in np.unique(arrive_day[bad]):
            self.st.bad_on[int(d) + 1].append(users[bad & (arrive_day == d)])

        # Returns and complaints, stamped when they happen (only those before the data's end).
        ln_ship = inv
        ret_p = P.RETURN_RATE[self.cat.category[item_sku[lines]]] + np.where(
            damaged[ln_ship], P.RETURN_IF_DAMAGED, 0
        )
        # A line's draws are keyed by its shopper and its place among their shipped lines.
        l_users, l_nth = users[ln_ship], occurrence(users[ln_ship])
        ret = R.keyed("return.if", l_users, l_nth) < ret_p
        after = 1 + 9 * R.keyed("return.after", l_users, l_nth)
        ret_t = delivered[ln_ship] + (after * DAY_S * US).astype(np.int64)
        r = ret & (ret_t < self.cfg.end_us)
        reason = np.where(
            damaged[ln_ship], 0, X.integers(R.keyed("return.reason", l_users, l_nth), 1, 3)
        )
        rid = self._new_ids("return", r.sum())
        self.out.add(
            "returns",
            return_id=rid,
            order_id=order_id[item_order[lines[r]]],
            user_id=Lookup("user", users[ln_ship[r]]),
            sku=Lookup("sku", item_sku[lines[r]]),
            quantity=item_qty[lines[r]],
            requested_at=ret_t[r],
            reason=Lookup("return_reason", reason[r]),
            refund=np.round(self.cat.price[item_sku[lines[r]]] * item_qty[lines[r]], 2),
        )
        complain = bad & (R.keyed("complain.if", users, nth) < 0.5)
        after = 2 * R.keyed("complain.after", users, nth)
        c_t = delivered + (after * DAY_S * US).astype(np.int64)
        c = complain & (c_t < self.cfg.end_us)
        self._contacts(
            "complain", users[c], c_t[c], np.where(damaged[c], 1, 0), order_id[s_order[c]]
        )
        return sid[inv]

    def _add_sessions(self, purpose, users, t_us, category, pages_mean) -> None:
        n = users.size
        sid = self._new_ids("session", n)
        nth = occurrence(users)
        pages = 1 + X.poisson(self.R.keyed(f"{purpose}.pages", users, nth), pages_mean)
        self.out.add(
            "sessions",
            session_id=sid,
            user_id=Lookup("user", users),
            started_at=t_us,
            device=Lookup("device", self.pop.device[users]),
            pages=pages,
            dwell_seconds=np.round(
                pages * X.lognormal(self.R.keyed(f"{purpose}.dwell", users, nth), np.log(35), 0.5),
                1,
            ),
            category=Lookup("category", category),
            categories_viewed=1 + X.poisson(self.R.keyed(f"{purpose}.viewed", users, nth), 0.8),
        )

    def _cart(self, users, t_us, sku, qty, action) -> None:
        eid = self._new_ids("cart", users.size)
        self.out.add(
            "cart_events",
            event_id=eid,
            user_id=Lookup("user", users),
            ts=t_us,
            sku=Lookup("sku", sku),
            action=Lookup("action", np.full(users.size, T.CART_ACTIONS.index(action))),
            quantity=qty,
        )

    def _contacts(self, purpose, users, t_us, reason, order_id) -> None:
        cid = self._new_ids("contact", users.size)
        u = self.R.keyed(f"{purpose}.channel", users, occurrence(users))
        self.out.add(
            "service_contacts",
            contact_id=cid,
            user_id=Lookup("user", users),
            ts=t_us,
            channel=Lookup("contact_channel", X.integers(u, 0, 3)),
            reason=Lookup("contact_reason", reason),
            order_id=Nullable(order_id, order_id < 0),
        )

    def _browse(self, day, day_us, active) -> None:
        """Sessions, searches, cart adds and removals, address changes, account contacts."""
        n = self.pop.city.size
        rate = (
            0.12
            * self.pop.engagement
            * np.where(self.st.interested, 4.0, 1.0)
            * np.sqrt(self.mult[day])
        )
        rate = np.where(self.st.alive, rate, 0.05 * rate) * active
        R = self.R
        count = X.poisson(R.vec("browse.visits", n), rate)
        users = np.repeat(np.arange(n), count)
        nth = occurrence(users)  # a visit's draws: its shopper and its place among their visits

        def u(purpose: str) -> np.ndarray:
            return R.keyed(f"browse.{purpose}", users, nth)

        t_us = day_us + _time_of_day(u("time"), self.pop.peak_hour[users]) * US
        interested = self.st.interested[users]
        looks_at_interest = interested & (u("interest") < 0.7)
        # One of the shopper's needs, at random.
        needs = self.pop.needs[users]
        pick = (u("need_pick") * needs.sum(axis=1)).astype(np.int64)
        need_cat = P.CYCLE_IDX[np.argmax(np.cumsum(needs, axis=1) > pick[:, None], axis=1)]
        has_need = needs.any(axis=1) & (u("need") < 0.3)
        category = np.where(
            looks_at_interest,
            self.st.interest_cat[users],
            np.where(has_need, need_cat, _taste_pick(u("taste"), self.pop.taste[users])),
        )
        self._add_sessions(
            "browse", users, t_us, category, pages_mean=np.where(interested, 5.0, 2.0)
        )

        search = u("search") < np.where(interested, 0.5, 0.25)
        s_users, s_cat = users[search], category[search]
        s_u = {w: R.keyed(f"search.{w}", s_users, nth[search]) for w in ("vague", "ts", "results")}
        vague = s_u["vague"] < 0.1
        sid = self._new_ids("search", s_users.size)
        query = np.where(vague, P.N_CAT, s_cat)
        self.out.add(
            "searches",
            search_id=sid,
            user_id=Lookup("user", s_users),
            ts=t_us[search] + X.integers(s_u["ts"], 5, 120) * US,
            query=Lookup("query", query),
            category=Nullable(Lookup("category", s_cat), vague),
            results=X.poisson(s_u["results"], 40.0),
        )

        # An interested shopper puts something in the cart; carts are cleared now and then.
        adds = looks_at_interest & (u("cart") < 0.5)
        a_users = np.unique(users[adds])
        a_users = a_users[(self.st.cart_sku[a_users] < 0) & self.st.alive[a_users]]
        first_t = np.full(n, 0, dtype=np.int64)
        first_t[users[::-1]] = t_us[::-1]
        a_sku = pick_sku(R.vec("cart.sku", n)[a_users], self.cat, self.st.interest_cat[a_users])
        self.st.cart_sku[a_users] = a_sku
        self._cart(
            a_users,
            first_t[a_users] + X.integers(R.vec("cart.after", n)[a_users], 30, 600) * US,
            a_sku,
            np.ones(a_users.size, dtype=np.int64),
            "add",
        )
        drop = np.flatnonzero((self.st.cart_sku >= 0) & (R.vec("cart.drop", n) < 0.04))
        drop = drop[~np.isin(drop, a_users)]
        self._cart(
            drop,
            day_us + _time_of_day(R.vec("cart.drop_time", n)[drop], self.pop.peak_hour[drop]) * US,
            self.st.cart_sku[drop],
            np.ones(drop.size, dtype=np.int64),
            "remove",
        )
        self.st.cart_sku[drop] = -1

        # Moves within the city, and account questions.
        move = np.flatnonzero(self.st.alive & active & (R.vec("move", n) < 1 / 1500))
        self.st.lat[move] = self.pop.lat[move] + X.normal(R.vec("move.lat", n)[move], 0, 0.03)
        self.st.lon[move] = self.pop.lon[move] + X.normal(R.vec("move.lon", n)[move], 0, 0.03)
        # A move is a new address: numbered after the households' own.
        self.st.address[move] = n + self._new_ids("address", move.size) - 1
        self.out.add(
            "address_changes",
            user_id=Lookup("user", move),
            address_id=labels("a", self.st.address[move]),
            changed_at=day_us
            + _time_of_day(R.vec("move.time", n)[move], self.pop.peak_hour[move]) * US,
            lat=self.st.lat[move],
            lon=self.st.lon[move],
            **self.out.city_columns(self.pop.city[move]),
        )
        ask = np.flatnonzero(active & self.st.alive & (R.vec("ask", n) < 1 / 3000))
        self._contacts(
            "ask",
            ask,
            day_us + _time_of_day(R.vec("ask.time", n)[ask], self.pop.peak_hour[ask]) * US,
            X.choice(R.vec("ask.reason", n)[ask], [3, 4], [0.5, 0.5]),
            np.full(ask.size, -1),
        )

    def _inventory_day(self, day) -> None:
        self.out.inventory_day(day, self.carried, self.stock)
        tomorrow = self.restock_weekday == (day + 1) % 7
        rows = np.flatnonzero(tomorrow)
        # A supply shock now and then: the delivery does not come and the node may run dry.
        shock = self.R.vec("restock", (rows.size, self.carried.shape[1]))
        arrives = self.carried[rows] & (shock >= 0.08)
        received = np.where(arrives, np.maximum(self.target[rows] - self.stock[rows], 0), 0)
        self.stock[rows] += received
        self.out.note_received(rows, received)


# --- set-up ---------------------------------------------------------------------------------


class _Ids:
    """String ids, built once and looked up by index when batches are written."""

    def __init__(self, n, cat, nodes) -> None:
        width = max(7, len(str(n)))
        self.user = pa.array(
            np.char.add("u", np.char.zfill(np.arange(1, n + 1).astype(str), width))
        )
        self.sku = pa.array([f"SKU-{i:04d}" for i in range(cat.category.size)])
        self.node = pa.array(nodes.node_id.tolist())


def _active_share(pop, orders_per_day: np.ndarray) -> np.ndarray:
    """Each shopper's share of days active: lapsing (per day, and after orders) against coming
    back. Rough: the chance of lapsing after an order is averaged over a year's orders."""
    per_year = np.maximum(orders_per_day * 365, 1.0)
    after_order = B.lapse_after_order_prob(pop.lapse_after_order, per_year / 4)
    lapse = pop.churn_base + after_order * orders_per_day
    return pop.winback / (pop.winback + lapse)


def _rates(pop) -> tuple[np.ndarray, np.ndarray]:
    """Per shopper while active: replenishments bought here per day, per need; impulse orders."""
    replenish = pop.needs / pop.cycle_mean * pop.loyalty[:, None]
    impulse = 0.0077 * pop.engagement
    return replenish, impulse


def _expected_daily_orders(pop) -> np.ndarray:
    """Rough daily orders per category, to size node capacity to the population."""
    replenish, impulse = _rates(pop)
    share = _active_share(pop, replenish.sum(axis=1) + impulse)
    exp = np.zeros(P.N_CAT)
    exp[P.CYCLE_IDX] = (replenish * share[:, None]).sum(axis=0)
    taste = np.diff(np.c_[np.zeros(len(pop.taste)), pop.taste], axis=1)
    exp += (taste * (impulse * share)[:, None]).sum(axis=0)
    return exp


def _expected_daily_units(pop) -> np.ndarray:
    """Rough daily units per category (replenishments, impulse lines and add-ons with their
    quantities), to size stock to the population's baskets."""
    replenish, impulse = _rates(pop)
    per_user = replenish.sum(axis=1)
    share = _active_share(pop, per_user + impulse)
    taste = np.diff(np.c_[np.zeros(len(pop.taste)), pop.taste], axis=1)
    units = np.zeros(P.N_CAT)
    units[P.CYCLE_IDX] = (replenish * share[:, None]).sum(axis=0) * (
        np.arange(1, 4) @ P.REPLENISH_QTY
    )
    add_on = (per_user + impulse) * P.ADDON_LINES * (np.arange(1, 3) @ P.ADDON_QTY)
    units += (taste * ((impulse + add_on) * share)[:, None]).sum(axis=0)
    return units


def _weather(rng: np.random.Generator, n_days: int) -> np.ndarray:
    """Storm days per region: a two-state chain that starts 2% and ends 30% of days."""
    from cadence.world._geo import REGIONS

    storm = np.zeros((n_days, len(REGIONS)), dtype=bool)
    state = np.zeros(len(REGIONS), dtype=bool)
    for d in range(n_days):
        u = rng.random(len(REGIONS))
        state = np.where(state, u >= 0.3, u < 0.02)
        storm[d] = state
    return storm


def _weather_table(cfg, storm) -> pa.Table:
    """Every day and region of the data, storm or not: the feed a shop would buy."""
    from cadence.world._geo import REGIONS

    days, regions = np.indices(storm[: cfg.days].shape).reshape(2, -1)
    return to_table(
        "weather",
        {
            "date": np.datetime64(cfg.start, "D") + days,
            "region": np.array(REGIONS)[regions],
            "storm": storm[days, regions],
        },
    )


def _initial_state(rng, pop, cfg) -> _State:
    n = pop.city.size
    k = len(P.CYCLE_CATS)
    # Each need is a renewal process already running when the shopper arrives: the last
    # purchase was up to one cycle ago, and the next is drawn given none has happened since.
    act = pop.active_day[:, None]
    back = np.floor(rng.random((n, k)) * pop.cycle_mean).astype(np.int64) + 1
    last = act - back
    gap = B.sample_gap(
        rng.random((n, k)),
        pop.cycle_mean,
        B.gap_std(pop.cycle_mean, np.arange(k)),
        at_least=(act - last).astype(float),
    )
    # Shoppers who joined before the start: some are active at it, the others have lapsed.
    alive = (pop.signup_s >= 0) | (rng.random(n) < P.ACTIVE_AT_START)
    return _State(
        alive=alive,
        interested=np.zeros(n, dtype=bool),
        interest_cat=np.zeros(n, dtype=np.int64),
        coupon=np.zeros(n, dtype=bool),
        coupon_until=np.zeros(n, dtype=np.int64),
        coupon_row=np.full(n, -1, dtype=np.int64),
        last_order_day=np.full(n, -np.inf),
        n_orders=np.zeros(n, dtype=np.int64),
        n_bad=np.zeros(n, dtype=np.int64),
        need=pop.needs.copy(),
        last_renewal=last,
        next_due=last + gap,
        gap_mean=pop.cycle_mean.copy(),
        cart_sku=np.full(n, -1, dtype=np.int64),
        lat=pop.lat.copy(),
        lon=pop.lon.copy(),
        address=pop.household.copy(),
    )


# Each category's place among the replenished ones, or -1.
CYCLE_OF = np.full(P.N_CAT, -1)
CYCLE_OF[P.CYCLE_IDX] = np.arange(P.CYCLE_IDX.size)


def _taste_pick(u: np.ndarray, cum_taste: np.ndarray) -> np.ndarray:
    """A category by each shopper's tastes, from one uniform each."""
    return (u[:, None] > cum_taste).sum(axis=1)


def _time_of_day(u: np.ndarray, peak_hour: np.ndarray) -> np.ndarray:
    """Seconds into the day, around each shopper's favourite hour.

    Capped 20 minutes before midnight, so that what follows a visit (a search, a cart add)
    still falls on the same day and never after the data's end.
    """
    hours = (peak_hour + X.normal(u, 0, 2.5)) % 24
    return np.minimum(hours * 3600, 86400 - 1200).astype(np.int64)


# --- orders ---------------------------------------------------------------------------------


class _CouponLog:
    """Coupons issued so far; redemption fills in their order and time."""

    def __init__(self) -> None:
        self.user = np.zeros(0, dtype=np.int64)
        self.issued = np.zeros(0, dtype=np.int64)
        self.redeemed_at = np.zeros(0, dtype=np.int64)
        self.order = np.zeros(0, dtype=np.int64)

    def issue(self, users: np.ndarray, day_us: int) -> np.ndarray:
        rows = np.arange(self.user.size, self.user.size + users.size)
        self.user = np.concatenate([self.user, users])
        self.issued = np.concatenate([self.issued, np.full(users.size, day_us)])
        self.redeemed_at = np.concatenate([self.redeemed_at, np.full(users.size, -1)])
        self.order = np.concatenate([self.order, np.full(users.size, -1)])
        return rows

    def redeem(self, rows: np.ndarray, at_us: np.ndarray, order_ids: np.ndarray) -> None:
        self.redeemed_at[rows] = at_us
        self.order[rows] = order_ids

    def table(self, ids: _Ids) -> pa.Table:
        valid_us = P.COUPON_DAYS * DAY_S * US
        return to_table(
            "coupons",
            {
                "coupon_id": np.arange(1, self.user.size + 1),
                "user_id": Lookup("user", self.user),
                "issued_at": self.issued,
                "expires_at": self.issued + valid_us,
                "discount_rate": np.full(self.user.size, P.COUPON_DISCOUNT),
                "redeemed_at": Nullable(self.redeemed_at, self.redeemed_at < 0),
                "order_id": Nullable(self.order, self.order < 0),
            },
            {"user": ids.user},
        )


def _dist(lat1, lon1, lat2, lon2):
    from cadence.world._geo import haversine_km

    return haversine_km(lat1, lon1, lat2, lon2)


# --- browsing -------------------------------------------------------------------------------


# --- truth ----------------------------------------------------------------------------------


def _freeze(st: _State) -> _State:
    """A copy of what the oracle reads, safe from the simulation's in-place updates."""
    bad_on = defaultdict(list, {d: [np.concatenate(v)] for d, v in st.bad_on.items() if v})
    return replace(
        st,
        alive=st.alive.copy(),
        n_bad=st.n_bad.copy(),
        need=st.need.copy(),
        last_renewal=st.last_renewal.copy(),
        gap_mean=st.gap_mean.copy(),
        interested=st.interested.copy(),
        coupon=st.coupon.copy(),
        coupon_until=st.coupon_until.copy(),
        last_order_day=st.last_order_day.copy(),
        bad_on=bad_on,
    )


def _oracle_table(cfg, snap, st, pop, mult, ids, pending_day) -> pa.Table:
    inputs = OracleInputs(
        day=snap,
        eligible=pop.active_day <= snap,
        alive=st.alive,
        churn_base=pop.churn_base,
        winback=pop.winback,
        loyalty=pop.loyalty,
        n_bad=st.n_bad,
        bad_on={d: v[0] for d, v in st.bad_on.items()},
        need=st.need,
        last_renewal=st.last_renewal,
        gap_mean=st.gap_mean,
        cycle_mean=pop.cycle_mean,
        interested=st.interested,
        coupon=st.coupon,
        coupon_until=st.coupon_until,
        last_order_day=st.last_order_day,
        engagement=pop.engagement,
        coupon_response=pop.coupon_response,
        mult=mult,
    )
    who, probs = oracle_probabilities(inputs, cfg.horizons_days)
    # An accepted offer's order, not cancelled, comes on its day for certain.
    probs = [
        np.where(pending_day[who] < snap + h, 1.0, p)
        for h, p in zip(cfg.horizons_days, probs, strict=True)
    ]
    snap_us = cfg.start_us + snap * DAY_S * US
    cols = {
        "user_id": ids.user.take(pa.array(who)),
        "snapshot_at": pa.array(np.full(who.size, snap_us)).cast(pa.timestamp("us", tz="UTC")),
        "alive": pa.array(st.alive[who]),
    }
    for h, p in zip(cfg.horizons_days, probs, strict=True):
        cols[f"p_{h}d"] = pa.array(p)
    return pa.table(cols)


class _Consents:
    """Withdrawals of consent (and some later re-grants), to profiling and to being contacted,
    at any time between signing up and the end. Drawn up front from streams of their own, so the
    shop's behaviour, and every other table, is what it was without them: nobody's buying
    depends on consent, though an offer never reaches a shopper who withdrew it."""

    def __init__(self, cfg, pop) -> None:
        parts = [
            _consent_events(cfg, pop, 0xC0, P.CONSENT_WITHDRAW_SHARE),
            _consent_events(cfg, pop, 0xC1, P.CONTACT_WITHDRAW_SHARE),
        ]
        self.start_us = cfg.start_us
        self.user = np.concatenate([p[0] for p in parts])
        self.s = np.concatenate([p[1] for p in parts])
        self.purpose = np.concatenate([np.full(p[0].size, i) for i, p in enumerate(parts)])
        self.granted = np.concatenate([p[2] for p in parts])
        order = np.lexsort((self.s, self.user))
        self.user, self.s, self.purpose, self.granted = (
            a[order] for a in (self.user, self.s, self.purpose, self.granted)
        )

    def withdrawn(self, users: np.ndarray, at_us: int) -> np.ndarray:
        """Whether each shopper's profiling or contact consent stands withdrawn at `at_us`."""
        out = np.zeros(users.size, dtype=bool)
        at_s = (at_us - self.start_us) // US
        for purpose in (0, 1):
            mine = self.purpose == purpose
            u, t, g = self.user[mine], self.s[mine], self.granted[mine]
            key = (u << 32) + t  # (shopper, second) in one sortable integer
            last = np.searchsorted(key, (users << 32) + at_s, side="left") - 1
            seen = (last >= 0) & (u[np.maximum(last, 0)] == users)
            out |= seen & ~g[np.maximum(last, 0)]
        return out

    def table(self, ids) -> pa.Table:
        order = np.lexsort((self.purpose, self.s, self.user))
        return pa.table(
            {
                "user_id": ids.user.take(pa.array(self.user[order])),
                "changed_at": pa.array(
                    self.start_us + self.s[order] * US, pa.timestamp("us", "UTC")
                ),
                "purpose": pa.array(np.array(T.CONSENT_PURPOSES)[self.purpose[order]]),
                "granted": pa.array(self.granted[order]),
            }
        )


def _consent_events(cfg, pop, stream: int, share: float):
    """(users, seconds from the start, granted) of one purpose's withdrawals and re-grants."""
    rng = np.random.default_rng([cfg.seed, stream])
    n = cfg.users
    withdraw = np.flatnonzero(rng.random(n) < share)
    span_s = cfg.days * DAY_S
    first = np.maximum(pop.signup_s[withdraw], 0)
    at_s = first + rng.random(withdraw.size) * (span_s - first)
    again = rng.random(withdraw.size) < P.CONSENT_REGRANT_SHARE
    back_s = at_s + rng.uniform(30, 120, withdraw.size) * DAY_S
    again &= back_s < span_s
    users = np.concatenate([withdraw, withdraw[again]])
    times = np.concatenate([at_s, back_s[again]]).astype(np.int64)
    granted = np.arange(users.size) >= withdraw.size
    return users, times, granted


def _cycles_table(pop, st, ids) -> pa.Table:
    u, c = np.nonzero(pop.needs)
    return pa.table(
        {
            "user_id": ids.user.take(pa.array(u)),
            "category": pa.array(np.array(P.CYCLE_CATS)[c]),
            "mean_days": pa.array(pop.cycle_mean[u, c]),
            "std_days": pa.array(B.gap_std(pop.cycle_mean[u, c], c)),
            "need_active_at_end": pa.array(st.need[u, c]),
        }
    )
