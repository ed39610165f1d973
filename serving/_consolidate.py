"""Consolidation: which of a day's orders travel together, and with which dispatch wave.

Orders whose shoppers confirmed a merge offer (`mergeable`) and that leave one node for one
address become one parcel, or as few as the size limits allow, packed so that billed weights
land near the top of a tariff bracket (the tariff charges per started kg). Orders routed to
different carriers stay apart: a parcel travels with one carrier, and each order's promise
(`deadline_minute`) was worked out for its own carrier's transit time. Each parcel then takes a
dispatch wave that every order in it reaches and that still keeps the promise made to each
shopper; a node's waves that already dispatch a batch are preferred, since a new batch costs
its handling and a collection run. The shop's other orders ship as they always did, each alone
in the earliest wave with room (first come, first served, as the shop assigns waves); they are
placed first, so merging never delays them, and their batches are free to join.

Orders are taken out of the merge (`released`) when their parcel has no wave meeting every
promise in it (the tightest promises leave first, `promise_missed`), or when no wave with room
is left for it (`no_capacity`); they then ship alone, as the shop would have shipped them.

The baseline ships the same orders unmerged, by the shop's rule, priced alike. Waves are slots
of the plan's day and of the next day (`day_offset` 1); a parcel reaching no wave of the day
leaves with the next day's first. Capacity counts this plan's parcels only.

CO2, in kg: a parcel emits billed_kg / 1000 * distance_km * factor[mode] + stop_kg, the first
term its share of the line haul (factor in kg CO2e per tonne-km, the mode from the zone), the
second its last-mile stop; a batch adds batch_kg, one collection run. The default factors are
order-of-magnitude freight factors of the DEFRA / GLEC kind; operators should use their
carriers' own. `co2_price` (money per kg) weighs CO2 against cost in every choice; at 0 only
cost counts. While capacity does not bind, raising it never raises the plan's CO2: each
choice (a group's packing, a node's new batches) is the cheapest of a fixed set of candidates
at cost + co2_price * CO2. (When it binds, a different packing can leave a different parcel
without room, whose orders then ship alone.)

This module holds the public surface, the input checks and the CO2 model, and assembles the
plan. Packing one group of orders past the size limits is `_packing`'s; which waves an order
reaches, capacity, the shop's rule and the waves of merged parcels are `_waves`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cadence.serving._packing import pack
from cadence.serving._tariff import Tariff, require
from cadence.serving._waves import (
    DAY_MINUTES,
    WAVE_COLUMNS,
    Grid,
    choose_waves,
    first_come,
    reach,
    release_missed,
    wave_grid,
)

__all__ = [
    "DAY_MINUTES",
    "ORDER_COLUMNS",
    "WAVE_COLUMNS",
    "Co2Factors",
    "PackRules",
    "Plan",
    "consolidate",
]

ORDER_COLUMNS = (
    "order_id",
    "user_id",
    "address_id",
    "area",
    "node_id",
    "node_kind",
    "zone",
    "carrier",
    "distance_km",
    "weight_kg",
    "volume_cm3",
    "ready_minute",
    "deadline_minute",
    "mergeable",
)
_MODES = {"same_city": "van", "same_province": "truck", "cross_region": "truck", "remote": "air"}


@dataclass(frozen=True)
class Co2Factors:
    """CO2 per tonne-km by transport mode, per delivery stop and per dispatch batch (kg CO2e).

    `modes` maps each zone to its mode (van, truck or air). A stop of 0.2 kg is a van's ~0.25
    kg/km over the ~0.8 km a dense delivery route drives per stop.
    """

    van: float = 0.60
    truck: float = 0.11
    air: float = 1.13
    stop_kg: float = 0.2
    batch_kg: float = 2.0
    modes: Mapping[str, str] = field(default_factory=lambda: dict(_MODES))

    def __post_init__(self) -> None:
        for zone, mode in self.modes.items():
            if mode not in ("van", "truck", "air"):
                raise ValueError(f"zone {zone!r}: unknown transport mode {mode!r}")
        if min(self.van, self.truck, self.air, self.stop_kg, self.batch_kg) < 0:
            raise ValueError("CO2 factors cannot be negative")

    def per_tonne_km(self, zone: np.ndarray) -> np.ndarray:
        """kg CO2e per tonne-km of each zone's mode; ValueError naming a zone with no mode."""
        factor = {"van": self.van, "truck": self.truck, "air": self.air}
        out = pd.Series(np.asarray(zone, dtype=object)).map(
            {z: factor[m] for z, m in self.modes.items()}
        )
        if out.isna().any():
            missing = out[out.isna()].index[0]
            raise ValueError(f"no transport mode for zone {np.asarray(zone)[missing]!r}")
        return out.to_numpy(float)


@dataclass(frozen=True)
class PackRules:
    """Parcel size limits, how long before a wave's cut-off an order must be ready to be picked
    for it, the price put on a kg of CO2 (0: cost only) and the CO2 model."""

    max_weight_kg: float = 30.0
    max_volume_cm3: float = 120_000.0
    lead_minutes: int = 60
    co2_price: float = 0.0
    co2: Co2Factors = field(default_factory=Co2Factors)

    def __post_init__(self) -> None:
        if not (self.max_weight_kg > 0 and self.max_volume_cm3 > 0):
            raise ValueError("parcel size limits must be positive")
        if self.lead_minutes < 0 or self.co2_price < 0:
            raise ValueError("lead_minutes and co2_price cannot be negative")


@dataclass
class Plan:
    """A day's shipment plan beside its unmerged baseline.

    Attributes
    ----------
    parcels : one row a parcel: parcel_id, node_id, address_id, area, zone, carrier, wave,
        day_offset, n_orders, weight_kg, volume_cm3, billed_kg, cost, co2_kg, merged (more than
        one order), from_merge (built by the merge, not an order shipping alone as the shop
        would), oversize (one order over the limits).
    assignments : order_id -> parcel_id, every order once.
    released : order_id, reason (promise_missed or no_capacity) of orders taken out of the merge.
    batches : one row a node, wave and day with a parcel: parcels, batch_cost, co2_kg (the
        batch's collection run), areas (distinct destination areas).
    baseline_parcels, baseline_batches : the same for the orders shipped unmerged (parcel_id
        is the order's row position in `orders`).
    summary : for "merged" and "baseline": orders, parcels, batches, batches_per_node_day,
        cost_per_order (parcels and batches), co2_per_order (likewise).
    """

    parcels: pd.DataFrame
    assignments: pd.DataFrame
    released: pd.DataFrame
    batches: pd.DataFrame
    baseline_parcels: pd.DataFrame
    baseline_batches: pd.DataFrame
    summary: dict[str, dict[str, float]]


def consolidate(
    orders: pd.DataFrame, waves: pd.DataFrame, tariff: Tariff, rules: PackRules | None = None
) -> Plan:
    """Plan the day's parcels and waves.

    Parameters
    ----------
    orders : one row an order to ship on the plan's day, with the columns of `ORDER_COLUMNS`
        (`ready_minute` and `deadline_minute` in minutes after the day's midnight, UTC;
        `deadline_minute` NaN: no promise to keep).
    waves : the nodes' dispatch waves, as the raw table `dispatch_waves`.
    tariff : the carrier tariff (`fit_tariff`).
    rules : size limits, lead time, CO2 model and price.

    Raises
    ------
    ValueError
        Naming a missing column, a node without waves, or a zone, carrier or node kind that
        the tariff or the CO2 model lacks.
    """
    day = _day(orders, waves, tariff, rules or PackRules())
    grid, node = day.grid, day.node
    n = node.size

    # 1. The merge's parcels; 2. orders whose parcel can keep no promise leave it.
    pid = _merge_parcels(day)
    pid, missed = release_missed(pid, day.lo, day.hi, day.ready, day.deadline, grid.cutoff.shape[1])
    reason = np.where(missed, "promise_missed", "")

    # 3. The shop's own parcels take their waves first, as the shop assigns them.
    fill = np.zeros_like(grid.capacity)
    slot = np.full(n, -1, dtype=np.int64)
    alone = pid < 0
    slot[alone] = _shop(day, np.flatnonzero(alone), fill)

    # 4. The merge's parcels take the waves that open fewest new batches; those left without
    # room ship alone after all.
    rows = np.flatnonzero(~alone)
    ids, p_of = np.unique(pid[rows], return_inverse=True)
    batch_co2 = day.rules.co2_price * day.rules.co2.batch_kg
    p_slot = choose_waves(grid, p_of, node[rows], day.lo[rows], day.hi[rows], fill, batch_co2)
    full = rows[p_slot[p_of] < 0]
    reason[full] = "no_capacity"
    slot[full] = _shop(day, full, fill)

    # Final parcel numbers: the merge's placed parcels first, then every order shipping alone.
    placed = np.flatnonzero(p_slot >= 0)
    renumber = np.full(ids.size, -1, dtype=np.int64)
    renumber[placed] = np.arange(placed.size)
    final = np.full(n, -1, dtype=np.int64)
    final[rows] = renumber[p_of]
    single = np.flatnonzero(final < 0)
    final[single] = placed.size + np.arange(single.size)
    parcel_slot = np.r_[p_slot[placed], slot[single]]
    is_merge = np.r_[np.ones(placed.size, bool), np.zeros(single.size, bool)]
    parcels, batches = _frames(day, final, parcel_slot, is_merge)

    base_fill = np.zeros_like(grid.capacity)
    base_slot = _shop(day, np.arange(n), base_fill)
    base_parcels, base_batches = _frames(day, np.arange(n), base_slot, np.zeros(n, bool))
    out = reason != ""
    return Plan(
        parcels=parcels,
        assignments=pd.DataFrame({"order_id": day.order_id, "parcel_id": final}),
        released=pd.DataFrame({"order_id": day.order_id[out], "reason": reason[out]}),
        batches=batches,
        baseline_parcels=base_parcels,
        baseline_batches=base_batches,
        summary={
            "merged": _summary(parcels, batches, n),
            "baseline": _summary(base_parcels, base_batches, n),
        },
    )


@dataclass(frozen=True)
class _Day:
    """The day's orders as arrays: node, sizes, prices, CO2 per billed kg, and `lo`, `hi`, the
    first slot each reaches and the last that keeps its promise (-1: none)."""

    frame: pd.DataFrame
    node_ids: pd.Index
    node: np.ndarray
    grid: Grid
    tariff: Tariff
    rules: PackRules
    order_id: np.ndarray
    weight: np.ndarray
    volume: np.ndarray
    ready: np.ndarray
    deadline: np.ndarray
    first: np.ndarray
    nxt: np.ndarray
    pick: np.ndarray
    per_kg: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _day(orders: pd.DataFrame, waves: pd.DataFrame, tariff: Tariff, rules: PackRules) -> _Day:
    require(orders, "orders", ORDER_COLUMNS)
    require(waves, "waves", WAVE_COLUMNS)
    for column in ORDER_COLUMNS:
        if column != "deadline_minute" and orders[column].isna().any():
            raise ValueError(f"orders column {column!r} has missing values")
    if orders["order_id"].duplicated().any():
        raise ValueError("orders column 'order_id' repeats an order")
    o = orders.reset_index(drop=True)
    node_ids = pd.Index(pd.unique(o["node_id"]))
    node = node_ids.get_indexer(o["node_id"]).astype(np.int64)
    grid = wave_grid(waves, node_ids)
    first, nxt, pick = tariff.rates(
        o["zone"].to_numpy(), o["carrier"].to_numpy(), o["node_kind"].to_numpy()
    )
    distance = o["distance_km"].to_numpy(float)
    ready = o["ready_minute"].to_numpy(float)
    deadline = np.nan_to_num(o["deadline_minute"].to_numpy(float), nan=np.inf)
    lo, hi = reach(grid, node, ready, deadline, rules.lead_minutes)
    return _Day(
        frame=o,
        node_ids=node_ids,
        node=node,
        grid=grid,
        tariff=tariff,
        rules=rules,
        order_id=o["order_id"].to_numpy(np.int64),
        weight=o["weight_kg"].to_numpy(float),
        volume=o["volume_cm3"].to_numpy(float),
        ready=ready,
        deadline=deadline,
        first=first,
        nxt=nxt,
        pick=pick,
        per_kg=rules.co2.per_tonne_km(o["zone"].to_numpy()) * distance / 1e3,
        lo=lo,
        hi=hi,
    )


def _merge_parcels(day: _Day) -> np.ndarray:
    """Parcel number of each mergeable order (-1 for the shop's own): one per node, address and
    carrier where the limits allow, else packed; an order over the limits alone."""
    r = day.rules
    merge = day.frame["mergeable"].to_numpy(bool)
    over = (day.weight > r.max_weight_kg) | (day.volume > r.max_volume_cm3)
    packable = np.flatnonzero(merge & ~over)
    group = np.full(day.node.size, -1, dtype=np.int64)
    keys = day.frame.iloc[packable][["node_id", "address_id", "carrier", "zone"]]
    group[packable] = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy()
    n_groups = int(group.max(initial=-1)) + 1
    total_w = np.bincount(group[packable], weights=day.weight[packable], minlength=n_groups)
    total_v = np.bincount(group[packable], weights=day.volume[packable], minlength=n_groups)
    fits = (total_w <= r.max_weight_kg) & (total_v <= r.max_volume_cm3)
    pid = group.copy()
    # Groups past the limits are few: each is packed on its own.
    big = packable[~fits[group[packable]]]
    big = big[np.lexsort((day.order_id[big], group[big]))]  # the rows' order changes nothing
    next_id = n_groups
    for members in np.split(big, np.flatnonzero(np.diff(group[big])) + 1) if big.size else []:
        h = members[0]
        bins = pack(
            day.weight[members],
            day.volume[members],
            day.lo[members],
            day.hi[members],
            day.per_kg[members],
            first=day.first[h],
            nxt=day.nxt[h],
            pick=day.pick[h],
            divisor=day.tariff.divisor,
            stop_kg=r.co2.stop_kg,
            max_weight_kg=r.max_weight_kg,
            max_volume_cm3=r.max_volume_cm3,
            co2_price=r.co2_price,
        )
        pid[members] = next_id + bins
        next_id += int(bins.max()) + 1
    alone = np.flatnonzero(merge & over)
    pid[alone] = next_id + np.arange(alone.size)
    return pid


def _shop(day: _Day, rows: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The shop's rule (`first_come`) for the orders `rows`, each a parcel of its own."""
    return first_come(
        day.grid, day.node[rows], day.lo[rows], day.ready[rows], day.order_id[rows], fill
    )


def _frames(
    day: _Day, pid: np.ndarray, slot: np.ndarray, merge: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parcels (`pid`: parcel of each order; `slot`, `merge`: of each parcel) and batches."""
    r, g, o = day.rules, day.grid, day.frame
    n_parcels = slot.size
    head = np.zeros(n_parcels, dtype=np.int64)
    head[pid[::-1]] = np.arange(pid.size)[::-1]  # each parcel's first order
    n_orders = np.bincount(pid, minlength=n_parcels)
    weight = np.bincount(pid, weights=day.weight, minlength=n_parcels)
    volume = np.bincount(pid, weights=day.volume, minlength=n_parcels)
    per_kg = np.zeros(n_parcels)
    np.maximum.at(per_kg, pid, day.per_kg)
    billed = day.tariff.billed(weight, volume)
    extra = np.ceil(np.maximum(billed - 1.0, 0.0) - 1e-9)
    node = day.node[head]
    parcels = pd.DataFrame(
        {
            "parcel_id": np.arange(n_parcels, dtype=np.int64),
            "node_id": day.node_ids.to_numpy()[node],
            "address_id": o["address_id"].to_numpy()[head],
            "area": o["area"].to_numpy()[head],
            "zone": o["zone"].to_numpy()[head],
            "carrier": o["carrier"].to_numpy()[head],
            "wave": g.wave[node, slot],
            "day_offset": (slot >= g.width).astype(np.int64),
            "n_orders": n_orders,
            "weight_kg": weight,
            "volume_cm3": volume,
            "billed_kg": billed,
            "cost": np.round(day.first[head] + day.nxt[head] * extra + day.pick[head], 2),
            "co2_kg": billed * per_kg + r.co2.stop_kg,
            "merged": n_orders > 1,
            "from_merge": merge,
            "oversize": (weight > r.max_weight_kg) | (volume > r.max_volume_cm3),
        }
    )
    batch, of = np.unique(node * g.cutoff.shape[1] + slot, return_inverse=True)
    b_node, b_slot = np.divmod(batch, max(g.cutoff.shape[1], 1))
    areas = pd.Series(parcels["area"].to_numpy()).groupby(of).nunique()
    batches = pd.DataFrame(
        {
            "node_id": day.node_ids.to_numpy()[b_node],
            "wave": g.wave[b_node, b_slot],
            "day_offset": (b_slot >= g.width).astype(np.int64),
            "parcels": np.bincount(of, minlength=batch.size),
            "batch_cost": g.batch_cost[b_node, b_slot],
            "co2_kg": np.full(batch.size, r.co2.batch_kg),
            "areas": areas.reindex(np.arange(batch.size), fill_value=0).to_numpy(np.int64),
        }
    )
    return parcels, batches


def _summary(parcels: pd.DataFrame, batches: pd.DataFrame, n_orders: int) -> dict[str, float]:
    per = max(n_orders, 1)  # an empty day: every ratio 0
    node_days = len(batches[["node_id", "day_offset"]].drop_duplicates())
    return {
        "orders": n_orders,
        "parcels": len(parcels),
        "batches": len(batches),
        "batches_per_node_day": len(batches) / max(node_days, 1),
        "cost_per_order": float(parcels["cost"].sum() + batches["batch_cost"].sum()) / per,
        "co2_per_order": float(parcels["co2_kg"].sum() + batches["co2_kg"].sum()) / per,
    }
