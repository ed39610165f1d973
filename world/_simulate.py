"""The day-by-day simulation of the shop, vectorised across shoppers.

Each simulated day runs the same steps in the same order for every shopper (the oracle in
`_oracle.py` mirrors steps 1-5 exactly):

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
nothing itself.
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
from cadence.world._oracle import OracleInputs, oracle_probabilities
from cadence.world._population import make_catalogue, make_population, pick_sku
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
    cfg: WorldConfig, on_day: Callable[[int], None] | None = None
) -> Iterator[tuple[str, pa.Table]]:
    """Run the shop for `cfg.days` days, yielding `(table, batch)` as they are made."""
    yield from _Shop(cfg).run(on_day)


class _Shop:
    """One simulated shop: its fixed world, its shoppers' state, and the day's steps."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        self.rng = rng = np.random.default_rng(cfg.seed)
        self.geo = make_geography(rng)
        self.cat = make_catalogue(rng)
        self.pop = make_population(rng, self.geo, self.cat, cfg.users, cfg.days)
        expected_orders = _expected_daily_orders(self.pop, self.cat)
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
        self.counters: defaultdict[str, int] = defaultdict(int)
        self.oracles: deque[Future[pa.Table]] = deque()

    def run(self, on_day: Callable[[int], None] | None) -> Iterator[tuple[str, pa.Table]]:
        yield from static_tables(self.cfg, self.geo, self.cat, self.pop, self.nodes, self.ids)
        yield "truth_weather", _weather_table(self.cfg, self.storm)
        yield "dispatch_waves", self.dispatch.table(self.out.lookups)
        self.pool = ThreadPoolExecutor(max_workers=1)
        try:
            yield from self._run(on_day)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        yield "coupons", self.coupons.table(self.ids)
        yield "consents", _consents_table(self.cfg, self.pop, self.ids)
        yield "truth_latent", truth_latent(self.pop, self.st.alive, self.ids)
        yield "truth_cycles", _cycles_table(self.pop, self.st, self.ids)

    def _run(self, on_day) -> Iterator[tuple[str, pa.Table]]:
        n = self.cfg.users
        for day in range(self.cfg.days):
            day_us = self.cfg.start_us + day * DAY_S * US
            active = self.pop.active_day <= day

            # 1. Bad experiences delivered yesterday.
            for users in self.st.bad_on.pop(day, []):
                np.add.at(self.st.n_bad, users, 1)

            # 2. Coupons: expiry, then campaigns.
            self.st.coupon &= self.st.coupon_until > day
            if B.is_campaign_day(day):
                since = day - self.st.last_order_day
                issue = active & ~self.st.coupon & (self.rng.random(n) < B.issue_prob(since))
                who = np.flatnonzero(issue)
                self.st.coupon[who] = True
                self.st.coupon_until[who] = day + P.COUPON_DAYS
                self.st.coupon_row[who] = self.coupons.issue(who, day_us)

            # 3. Lapsed shoppers may come back, with an order; then active ones may lapse.
            back = (
                ~self.st.alive
                & active
                & (
                    self.rng.random(n)
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
                & (self.rng.random(n) < B.churn_prob(self.pop.churn_base, self.st.n_bad))
            )
            self.st.alive = (self.st.alive & ~churn) | back
            buyer = self.st.alive & active

            # 4. Replenishment: the need may end; what falls due today is bought here (an
            # active shopper's loyal share) or skipped and bought elsewhere; the cycle runs on
            # from today either way, a stockpile (bought with a coupon) lasting longer.
            self.st.need &= self.rng.random(self.st.need.shape) >= P.NEED_END_HAZARD
            due = self.st.need & (self.st.next_due == day) & active[:, None]
            du, dc = np.nonzero(due)
            here = buyer[du] & (self.rng.random(du.size) < self.pop.loyalty[du])
            self._renew(day, du, dc, here)
            du, dc = du[here], dc[here]

            # 5. Impulse orders.
            p_imp = B.impulse_prob(
                self.pop.engagement,
                self.st.interested,
                self.st.coupon,
                self.pop.coupon_response,
                self.mult[day],
            )
            impulse = (buyer & ~back & (self.rng.random(n) < p_imp)) | back

            # 6. Orders, routing, shipments.
            ordering = impulse.copy()
            ordering[du] = True
            order_users = np.flatnonzero(ordering)
            if order_users.size:
                du, dc = self._bundle(day, order_users, du, dc)
                self._place_orders(day, day_us, order_users, du, dc, impulse)
                self.st.n_orders[order_users] += 1
                lapse = self.rng.random(order_users.size) < B.lapse_after_order_prob(
                    self.pop.lapse_after_order[order_users], self.st.n_orders[order_users]
                )
                self.st.alive[order_users[lapse]] = False
            # 7. What shoppers leave behind while browsing.
            self._browse(day, day_us, active)

            # 8. Interest moves on; an impulse purchase satisfies it.
            on = self.rng.random(n) < B.interest_on_prob(
                self.pop.engagement, self.st.coupon, self.pop.coupon_response
            )
            off = self.rng.random(n) < P.INTEREST_OFF
            newly = ~self.st.interested & on
            self.st.interest_cat[newly] = _taste_pick(self.rng, self.pop.taste[newly])
            self.st.interested = np.where(self.st.interested, ~off, on) & ~impulse & self.st.alive

            # Inventory: record the day, then restock the nodes whose delivery day it is tomorrow.
            self._inventory_day(day)

            if (day + 1) % self.cfg.truth_every_days == 0:
                # The oracle runs beside the simulation on a frozen copy of today's state.
                snapshot = _freeze(self.st)
                self.oracles.append(
                    self.pool.submit(
                        _oracle_table, self.cfg, day + 1, snapshot, self.pop, self.mult, self.ids
                    )
                )
            if (day + 1) % FLUSH_EVERY == 0 or day + 1 == self.cfg.days:
                yield from self.out.flush()
                while self.oracles and (self.oracles[0].done() or day + 1 == self.cfg.days):
                    yield "truth_oracle", self.oracles.popleft().result()
            if on_day is not None:
                on_day(day)

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
        soon &= self.rng.random(soon.shape) < P.BUNDLE_PROB
        rows, bc = np.nonzero(soon)
        if not rows.size:
            return du, dc
        bu = order_users[rows]
        self._renew(day, bu, bc, np.ones(bu.size, dtype=bool))
        return np.concatenate([du, bu]), np.concatenate([dc, bc])

    def _renew(self, day, users, cats, here) -> None:
        """Replenishments of (users, cats) happen today, `here` at this shop: the next gap is
        drawn around the shopper's own cycle, longer for a stockpile bought with a coupon."""
        self.st.last_renewal[users, cats] = day
        stock = here & self.st.coupon[users]
        mean = self.pop.cycle_mean[users, cats] * np.where(stock, P.STOCKPILE_GAP, 1.0)
        self.st.gap_mean[users, cats] = mean
        self.st.next_due[users, cats] = day + B.sample_gap(self.rng, mean, B.gap_std(mean, cats))

    def _place_orders(self, day, day_us, order_users, du, dc, impulse) -> None:
        n_o = order_users.size
        slot = np.full(self.pop.city.size, -1)
        slot[order_users] = np.arange(n_o)
        t_order = day_us + _time_of_day(self.rng, self.pop.peak_hour[order_users]) * US
        order_id = self._new_ids("order", n_o)

        # Lines: replenishments due today, the impulse item (the one waiting in the cart, if any),
        # and now and then an add-on from the shopper's tastes.
        rep_sku = np.where(
            self.rng.random(du.size) < 0.9,
            self.pop.favourite[du, dc],
            pick_sku(self.rng, self.cat, P.CYCLE_IDX[dc]),
        )
        rep_qty = self.rng.choice(np.arange(1, 4), du.size, p=P.REPLENISH_QTY)
        rep_qty += self.st.coupon[du]  # a stockpile
        imp_users = order_users[impulse[order_users]]
        imp_cat = np.where(
            self.st.interested[imp_users],
            self.st.interest_cat[imp_users],
            _taste_pick(self.rng, self.pop.taste[imp_users]),
        )
        from_cart = self.st.cart_sku[imp_users] >= 0
        imp_sku = np.where(
            from_cart, self.st.cart_sku[imp_users], pick_sku(self.rng, self.cat, imp_cat)
        )
        self.st.cart_sku[imp_users] = -1
        add_users = np.repeat(order_users, self.rng.poisson(P.ADDON_LINES, n_o))
        add_cat = _taste_pick(self.rng, self.pop.taste[add_users])
        # Nobody adds diapers without a baby: an add-on from a replenished category the shopper
        # has no need of is left out (the need's own purchases come due or are bundled).
        cyc = CYCLE_OF[add_cat]
        keep = (cyc < 0) | self.pop.needs[add_users, np.maximum(cyc, 0)]
        add_users, add_cat = add_users[keep], add_cat[keep]
        add_sku = pick_sku(self.rng, self.cat, add_cat)
        add_qty = self.rng.choice(np.arange(1, 3), add_users.size, p=P.ADDON_QTY)
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
        u = self.rng.random(n_o)
        channel = np.select(
            [has_store & (u < 0.05), dev == 2, dev == 3, u < 0.88],
            [3, 1, 2, 0],
            default=np.where(u < 0.94, 1, 2),
        )
        coupon = self.st.coupon[order_users]
        price = self.cat.price[item_sku]
        gross = np.bincount(item_order, weights=price * item_qty, minlength=n_o)
        discount = np.round(np.where(coupon, gross * P.COUPON_DISCOUNT, 0.0), 2)
        amount = np.round(gross - discount, 2)
        red = order_users[coupon]
        self.coupons.redeem(self.st.coupon_row[red], t_order[coupon], order_id[coupon])
        self.st.coupon[red] = False
        self.st.last_order_day[order_users] = day
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
                self.rng,
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
                day, ok, item_order, item_sku, item_qty, item_node, order_id, order_users, t_order
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
        sess_t = np.maximum(t_order[online] - self.rng.integers(120, 1500, ou.size) * US, day_us)
        first_cat = self.cat.category[item_sku[first]][online]
        self._add_sessions(ou, sess_t, first_cat, pages_mean=4.0)
        lines = np.flatnonzero(online[item_order])
        new_lines = lines[~item_cart[lines]]
        add_t = np.maximum(
            t_order[item_order[new_lines]] - self.rng.integers(30, 110, new_lines.size) * US,
            day_us,
        )
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
        self, day, lines, item_order, item_sku, item_qty, item_node, order_id, order_users, t_order
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
        carrier = legacy_carrier(self.rng, zone)
        dist = geo_dist = _dist(
            self.st.lat[users], self.st.lon[users], self.nodes.lat[s_node], self.nodes.lon[s_node]
        )
        billed = billed_weight(weight, volume)
        cost = shipping_cost(zone, carrier, billed, self.nodes.kind[s_node])
        # Each parcel leaves with a dispatch wave of its node; the carrier collects after it.
        wave = self.dispatch.assign(day, s_node, t_order[s_order])
        wave_at = self.dispatch.cutoff_us(s_node, wave)
        handover = P.HANDOVER_HOURS * self.rng.lognormal(0, 0.3, n_s)
        shipped_at = wave_at + (handover * 3600 * US).astype(np.int64)
        region = self.geo.city_region[dest]
        ship_day = np.minimum(
            (shipped_at - self.cfg.start_us) // (DAY_S * US), self.storm.shape[0] - 1
        )
        stormy = self.storm[ship_day, region]
        transit = delivery_days(zone, carrier, geo_dist, stormy, self.rng.lognormal(0, 0.2, n_s))
        delivered = shipped_at + (transit * DAY_S * US).astype(np.int64)
        day0 = self.cfg.start_us + day * DAY_S * US
        promised = day0 + (P.PROMISE_DAYS[zone] + 1) * DAY_S * US
        late = delivered > promised
        damaged = self.rng.random(n_s) < damage_prob(zone, carrier, fragile, stormy)
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
        ret = self.rng.random(lines.size) < ret_p
        ret_t = delivered[ln_ship] + (self.rng.uniform(1, 10, lines.size) * DAY_S * US).astype(
            np.int64
        )
        r = ret & (ret_t < self.cfg.end_us)
        reason = np.where(damaged[ln_ship], 0, self.rng.integers(1, 3, lines.size))
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
        complain = bad & (self.rng.random(n_s) < 0.5)
        c_t = delivered + (self.rng.uniform(0, 2, n_s) * DAY_S * US).astype(np.int64)
        c = complain & (c_t < self.cfg.end_us)
        self._contacts(users[c], c_t[c], np.where(damaged[c], 1, 0), order_id[s_order[c]])
        return sid[inv]

    def _add_sessions(self, users, t_us, category, pages_mean) -> None:
        n = users.size
        sid = self._new_ids("session", n)
        pages = 1 + self.rng.poisson(pages_mean, n)
        self.out.add(
            "sessions",
            session_id=sid,
            user_id=Lookup("user", users),
            started_at=t_us,
            device=Lookup("device", self.pop.device[users]),
            pages=pages,
            dwell_seconds=np.round(pages * self.rng.lognormal(np.log(35), 0.5, n), 1),
            category=Lookup("category", category),
            categories_viewed=1 + self.rng.poisson(0.8, n),
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

    def _contacts(self, users, t_us, reason, order_id) -> None:
        cid = self._new_ids("contact", users.size)
        self.out.add(
            "service_contacts",
            contact_id=cid,
            user_id=Lookup("user", users),
            ts=t_us,
            channel=Lookup("contact_channel", self.rng.integers(0, 3, users.size)),
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
        count = self.rng.poisson(rate)
        users = np.repeat(np.arange(n), count)
        t_us = day_us + _time_of_day(self.rng, self.pop.peak_hour[users]) * US
        interested = self.st.interested[users]
        looks_at_interest = interested & (self.rng.random(users.size) < 0.7)
        need_cat = P.CYCLE_IDX[
            np.argmax(
                self.pop.needs[users] * self.rng.random((users.size, P.CYCLE_IDX.size)), axis=1
            )
        ]
        has_need = self.pop.needs[users].any(axis=1) & (self.rng.random(users.size) < 0.3)
        category = np.where(
            looks_at_interest,
            self.st.interest_cat[users],
            np.where(has_need, need_cat, _taste_pick(self.rng, self.pop.taste[users])),
        )
        self._add_sessions(users, t_us, category, pages_mean=np.where(interested, 5.0, 2.0))

        search = self.rng.random(users.size) < np.where(interested, 0.5, 0.25)
        s_users, s_cat = users[search], category[search]
        vague = self.rng.random(s_users.size) < 0.1
        sid = self._new_ids("search", s_users.size)
        query = np.where(vague, P.N_CAT, s_cat)
        self.out.add(
            "searches",
            search_id=sid,
            user_id=Lookup("user", s_users),
            ts=t_us[search] + self.rng.integers(5, 120, s_users.size) * US,
            query=Lookup("query", query),
            category=Nullable(Lookup("category", s_cat), vague),
            results=self.rng.poisson(40, s_users.size),
        )

        # An interested shopper puts something in the cart; carts are cleared now and then.
        adds = looks_at_interest & (self.rng.random(users.size) < 0.5)
        a_users = np.unique(users[adds])
        a_users = a_users[(self.st.cart_sku[a_users] < 0) & self.st.alive[a_users]]
        first_t = np.full(n, 0, dtype=np.int64)
        first_t[users[::-1]] = t_us[::-1]
        a_sku = pick_sku(self.rng, self.cat, self.st.interest_cat[a_users])
        self.st.cart_sku[a_users] = a_sku
        self._cart(
            a_users,
            first_t[a_users] + self.rng.integers(30, 600, a_users.size) * US,
            a_sku,
            np.ones(a_users.size, dtype=np.int64),
            "add",
        )
        drop = np.flatnonzero((self.st.cart_sku >= 0) & (self.rng.random(n) < 0.04))
        drop = drop[~np.isin(drop, a_users)]
        self._cart(
            drop,
            day_us + _time_of_day(self.rng, self.pop.peak_hour[drop]) * US,
            self.st.cart_sku[drop],
            np.ones(drop.size, dtype=np.int64),
            "remove",
        )
        self.st.cart_sku[drop] = -1

        # Moves within the city, and account questions.
        move = np.flatnonzero(self.st.alive & active & (self.rng.random(n) < 1 / 1500))
        self.st.lat[move] = self.pop.lat[move] + self.rng.normal(0, 0.03, move.size)
        self.st.lon[move] = self.pop.lon[move] + self.rng.normal(0, 0.03, move.size)
        # A move is a new address: numbered after the households' own.
        self.st.address[move] = n + self._new_ids("address", move.size) - 1
        self.out.add(
            "address_changes",
            user_id=Lookup("user", move),
            address_id=labels("a", self.st.address[move]),
            changed_at=day_us + _time_of_day(self.rng, self.pop.peak_hour[move]) * US,
            lat=self.st.lat[move],
            lon=self.st.lon[move],
            **self.out.city_columns(self.pop.city[move]),
        )
        ask = np.flatnonzero(active & self.st.alive & (self.rng.random(n) < 1 / 3000))
        self._contacts(
            ask,
            day_us + _time_of_day(self.rng, self.pop.peak_hour[ask]) * US,
            self.rng.choice([3, 4], ask.size),
            np.full(ask.size, -1),
        )

    def _inventory_day(self, day) -> None:
        self.out.inventory_day(day, self.carried, self.stock)
        tomorrow = self.restock_weekday == (day + 1) % 7
        rows = np.flatnonzero(tomorrow)
        # A supply shock now and then: the delivery does not come and the node may run dry.
        arrives = self.carried[rows] & (self.rng.random((rows.size, self.carried.shape[1])) >= 0.08)
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


def _expected_daily_orders(pop, cat) -> np.ndarray:
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
    from cadence.world._geo import REGIONS

    days, regions = np.nonzero(storm[: cfg.days])
    dates = np.datetime64(cfg.start, "D") + days
    return pa.table({"date": pa.array(dates), "region": pa.array(np.array(REGIONS)[regions])})


def _initial_state(rng, pop, cfg) -> _State:
    n = pop.city.size
    k = len(P.CYCLE_CATS)
    # Each need is a renewal process already running when the shopper arrives: the last
    # purchase was up to one cycle ago, and the next is drawn given none has happened since.
    act = pop.active_day[:, None]
    back = np.floor(rng.random((n, k)) * pop.cycle_mean).astype(np.int64) + 1
    last = act - back
    gap = B.sample_gap(
        rng,
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


def _taste_pick(rng, cum_taste: np.ndarray) -> np.ndarray:
    return (rng.random((cum_taste.shape[0], 1)) > cum_taste).sum(axis=1)


def _time_of_day(rng, peak_hour: np.ndarray) -> np.ndarray:
    """Seconds into the day, around each shopper's favourite hour.

    Capped 20 minutes before midnight, so that what follows a visit (a search, a cart add)
    still falls on the same day and never after the data's end.
    """
    hours = (peak_hour + rng.normal(0, 2.5, peak_hour.size)) % 24
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


def _oracle_table(cfg, snap, st, pop, mult, ids) -> pa.Table:
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
    snap_us = cfg.start_us + snap * DAY_S * US
    cols = {
        "user_id": ids.user.take(pa.array(who)),
        "snapshot_at": pa.array(np.full(who.size, snap_us)).cast(pa.timestamp("us", tz="UTC")),
        "alive": pa.array(st.alive[who]),
    }
    for h, p in zip(cfg.horizons_days, probs, strict=True):
        cols[f"p_{h}d"] = pa.array(p)
    return pa.table(cols)


def _consents_table(cfg, pop, ids) -> pa.Table:
    """Withdrawals of consent to profiling (and some later re-grants), at any time between
    signing up and the end. Drawn from a stream of their own, so the shop's behaviour, and
    every other table, is what it was without them; nobody's buying depends on consent."""
    rng = np.random.default_rng([cfg.seed, 0xC0])
    n = cfg.users
    withdraw = np.flatnonzero(rng.random(n) < P.CONSENT_WITHDRAW_SHARE)
    span_s = cfg.days * DAY_S
    first = np.maximum(pop.signup_s[withdraw], 0)
    at_s = first + rng.random(withdraw.size) * (span_s - first)
    again = rng.random(withdraw.size) < P.CONSENT_REGRANT_SHARE
    back_s = at_s + rng.uniform(30, 120, withdraw.size) * DAY_S
    again &= back_s < span_s
    users = np.concatenate([withdraw, withdraw[again]])
    times = np.concatenate([at_s, back_s[again]]).astype(np.int64)
    order = np.lexsort((times, users))
    return pa.table(
        {
            "user_id": ids.user.take(pa.array(users[order])),
            "changed_at": pa.array(cfg.start_us + times[order] * US, pa.timestamp("us", "UTC")),
            "purpose": pa.array(np.full(users.size, "profiling")),
            "granted": pa.array(np.arange(users.size)[order] >= withdraw.size),
        }
    )


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
