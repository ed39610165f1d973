"""Routing a batch of orders: the candidates, the four strategies, and the plans they make.

A batch is a day's (or a wave's) shipped orders with their lines, the stock each node holds at
its start and the dispatch capacity left in each wave. A candidate is one whole way to fulfil an
order: one node, or (only when no node holds the whole order) a split over several, each parcel
with a carrier and the dispatch wave it leaves with. Candidates are scored by an `Estimate`:
the learned models (what a router can know) or the world's truth (what only the clairvoyant
bound may know). The objective per order is

    cost + damage_weight * P(damage) * value * refund share + per_day * days to arrival
         + late_penalty * [arrival past the promise] + split_penalty * (parcels - 1)
         + store_penalty * parcels from stores

with weights from `conf/routing.yaml`. The strategies:

- `nearest`: the static rule most shops run; each order in arrival order goes to the nearest
  node still holding all of it (else each line to the nearest node holding it), in the first wave
  it can reach, by the carrier the shop uses most for that zone. It ignores capacity.
- `greedy`: each order in arrival order takes its cheapest candidate that still fits.
- `optimal`: the mixed-integer program over all orders' candidates (`_route_opt.solve_mip`;
  a batch too big for branch and bound gets its linear relaxation rounded, the gap reported).
- `clairvoyant`: the same program over every node, carrier and wave, scored by the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from cadence.models._route_code import (
    BOOSTERS,
    Stored,
    matrix,
    predict_matrix,
    quantile_column,
)
from cadence.models._route_inputs import (
    CARRIERS,
    DAY_US,
    Network,
    haversine,
    node_features_of,
    pair_columns,
    storms_of,
)
from cadence.models._route_opt import Problem, Solution, solve_greedy, solve_mip, violations

STRATEGIES = ("nearest", "greedy", "optimal", "clairvoyant")

# Model inputs of at most this many rows are predicted on one thread (`ModelEstimate`).
SMALL_PREDICTION_ROWS = 512


@dataclass(frozen=True)
class Objective:
    """The business's weights (conf/routing.yaml `objective`)."""

    per_day: float = 1.0
    late_penalty: float = 15.0
    split_penalty: float = 4.0
    damage_weight: float = 1.0
    store_penalty: float = 0.0
    use_stores: bool = True


@dataclass(frozen=True)
class Search:
    """How wide the candidates are, and the solver's limits (conf/routing.yaml)."""

    nodes_per_order: int = 6
    waves: int = 3
    time_limit_seconds: float = 20.0
    mip_rel_gap: float = 1e-4
    unserved_cost: float = 1000.0
    max_mip_candidates: int = 50_000


@dataclass
class Batch:
    """Orders to route (one row each, with `ordered_us`, `promise_us`, destination and
    contents columns) and their lines (`line_order` indexes the orders' rows)."""

    orders: pd.DataFrame
    line_order: np.ndarray
    line_sku: np.ndarray
    line_qty: np.ndarray
    line_weight: np.ndarray
    line_volume: np.ndarray
    line_fragile: np.ndarray
    line_value: np.ndarray
    stock: np.ndarray  # (nodes, skus) units at the batch's start
    # Parcels each (node, wave cut-off in us) can still take; a wave not listed has its
    # full capacity.
    used: dict[tuple[int, int], int] = field(default_factory=dict)


@dataclass
class Plan:
    """A strategy's choice. Parcels: order row, node, carrier, wave cut-off, part number; lines:
    the parcel each line travels in (-1: its order is unassigned)."""

    strategy: str
    parcel_order: np.ndarray
    parcel_node: np.ndarray
    parcel_carrier: np.ndarray
    parcel_wave: np.ndarray
    parcel_part: np.ndarray
    line_parcel: np.ndarray
    unassigned: dict[int, str]
    predicted_objective: float = float("nan")
    method: str = ""
    gap: float | None = None
    seconds: float = 0.0
    stock_violations: int = 0
    capacity_violations: int = 0
    # The chosen parcels' rows with what the estimate expected, and every candidate weighed.
    chosen: pd.DataFrame | None = None
    candidates: pd.DataFrame | None = None


# An estimate scores parcel rows (one per order row, node, carrier, wave, contents): it returns
# cost, days from the order to arrival, and whether it misses the promise (a 0/1 or a chance).
Estimate = Callable[[pd.DataFrame], pd.DataFrame]


class ModelEstimate:
    """What the learned models expect: cost plus expected damage loss, days at the median,
    and a miss when the upper quantile arrives after the promise. The models do not read the
    wave (it is a schedule added to their days), so `parts` predicts each (order, parcel,
    node, carrier) once and the router weighs its waves with arithmetic."""

    def __init__(self, stored, net, weather, node_features, refund_share, damage_weight) -> None:
        self.stored, self.net = stored, net
        # Made once: every decision then looks them up without pandas.
        self.weather = storms_of(weather)
        self.node_features = node_features_of(node_features, net)
        self.refund_share, self.damage_weight = refund_share, damage_weight
        qs = stored.settings["quantiles"]
        self.q_hi = quantile_column(max(qs))
        self.q_mid = quantile_column(min(qs, key=lambda q: abs(q - 0.5)))
        self._one_thread: Stored | None = None  # made on the first small prediction

    def parts(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: cost with the expected damage loss, median and upper days after the cut-off."""
        columns = pair_columns(
            self.net,
            rows,
            rows.node.to_numpy(),
            rows.carrier.to_numpy(),
            rows.wave_us.to_numpy(),
            self.weather,
            self.node_features,
            wanted=self.stored.settings["features"],
        )
        return self._weigh(columns, rows.value.to_numpy())

    def order_parts(
        self,
        orders,
        order_row: np.ndarray,
        node: np.ndarray,
        carrier: np.ndarray,
        contents: dict[str, np.ndarray] | None = None,
        zone: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`parts` of parcels given as arrays, with no frame built: parcel i is order
        `order_row[i]` (a row of `orders`, a frame or a dict of arrays) leaving `node[i]` with
        `carrier[i]`, carrying what `contents` says (per parcel) or else its whole order;
        `zone` when the caller has it."""
        columns = pair_columns(
            self.net,
            orders,
            node,
            carrier,
            np.zeros(np.asarray(node).size, dtype=np.int64),
            self.weather,
            self.node_features,
            order_row=order_row,
            contents=contents,
            zone=zone,
            wanted=self.stored.settings["features"],
        )
        if contents is not None and "value" in contents:
            value = np.asarray(contents["value"])
        else:
            value = np.asarray(orders["value"])[order_row]
        return self._weigh(columns, value)

    def _weigh(self, columns, value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three models on the rows' columns, once, as `parts` returns them."""
        x = matrix(self.stored, columns)
        p = predict_matrix(self.boosters_for(x.shape[0]), x)
        cost = p["cost"] + self.damage_weight * p["damage"] * value * (self.refund_share)
        return cost, p[self.q_mid], p[self.q_hi]

    def boosters_for(self, rows: int) -> Stored:
        """The models to predict `rows` rows with. A few rows (one order's options) go to
        copies of the boosters that use one thread: on so little work, waking and waiting for
        a second thread costs more than it saves, and far more when the other cores are busy.
        Each row's prediction is the same whatever the thread count."""
        if rows > SMALL_PREDICTION_ROWS:
            return self.stored
        if self._one_thread is None:
            copies = []
            for name in BOOSTERS:
                booster = getattr(self.stored, name).copy()
                booster.set_param({"nthread": 1})
                copies.append(booster)
            self._one_thread = self.stored._replace(**dict(zip(BOOSTERS, copies, strict=True)))
        return self._one_thread

    def __call__(self, rows: pd.DataFrame) -> pd.DataFrame:
        net = self.net
        key = (
            (rows.order_row.to_numpy(np.int64) * 64 + rows.part.to_numpy(np.int64)) * net.n
            + rows.node.to_numpy(np.int64)
        ) * len(CARRIERS) + rows.carrier.to_numpy(np.int64)
        _, first, back = np.unique(key, return_index=True, return_inverse=True)
        cost, mid, hi_days = self.parts(rows.iloc[first])
        wait = (rows.wave_us.to_numpy() - rows.ordered_us.to_numpy()) / DAY_US
        hi = rows.wave_us.to_numpy() + (hi_days[back] * DAY_US).astype(np.int64)
        return pd.DataFrame(
            {
                "cost": cost[back],
                "days": wait + mid[back],
                "late": (hi > rows.promise_us.to_numpy()).astype(np.float64),
                "latest_us": hi,
            },
            index=rows.index,
        )


def model_estimate(
    stored: Stored,
    net: Network,
    weather: pd.DataFrame,
    node_features,
    refund_share: float,
    damage_weight: float,
) -> ModelEstimate:
    return ModelEstimate(stored, net, weather, node_features, refund_share, damage_weight)


def orders_objective(
    obj: Objective, net: Network, rows: pd.DataFrame, est: pd.DataFrame
) -> np.ndarray:
    """The objective of each parcel row (its share of the order's; the split penalty is added
    per extra parcel by the caller)."""
    store = net.kind[rows.node.to_numpy()] == 2
    return (
        est.cost.to_numpy()
        + obj.per_day * est.days.to_numpy()
        + obj.late_penalty * est.late.to_numpy()
        + obj.store_penalty * store
    )


class Router:
    """Builds a batch's candidates and plans it with each strategy."""

    def __init__(self, net: Network, objective: Objective, search: Search) -> None:
        self.net = net
        self.obj = objective
        self.search = search
        allowed_nodes = np.ones(net.n, dtype=bool)
        if not objective.use_stores:
            allowed_nodes &= net.kind != 2
        self.allowed_nodes = allowed_nodes
        # The carrier the shop uses most in each zone: the static rule's choice.
        self.usual_carrier = np.argmax(net.carrier_parcels, axis=1)

    # --- what can serve what -----------------------------------------------------------

    def whole(self, batch: Batch, stock: np.ndarray) -> np.ndarray:
        """(orders, nodes) bool: the node holds every line of the order in `stock`."""
        n_o = len(batch.orders)
        ok = stock[:, batch.line_sku].T >= batch.line_qty[:, None]  # (lines, nodes)
        bad = np.zeros((n_o, self.net.n), dtype=np.int64)
        np.add.at(bad, batch.line_order, (~ok).astype(np.int64))
        return (bad == 0) & self.allowed_nodes[None, :]

    def distance(self, batch: Batch) -> np.ndarray:
        o = batch.orders
        return haversine(
            o.dest_lat.to_numpy()[:, None],
            o.dest_lon.to_numpy()[:, None],
            self.net.lat,
            self.net.lon,
        )

    def unservable(self, batch: Batch) -> dict[int, str]:
        """Orders no node could serve even alone, with the reason in words."""
        out: dict[int, str] = {}
        o = batch.orders
        bad_dest = ~np.isfinite(o.dest_lat.to_numpy()) | ~np.isfinite(o.dest_lon.to_numpy())
        for r in np.flatnonzero(bad_dest):
            out[int(r)] = "unknown destination"
        unknown = batch.line_sku < 0
        for r in np.unique(batch.line_order[unknown]):
            out.setdefault(int(r), "unknown SKU")
        held = (
            batch.stock[:, np.maximum(batch.line_sku, 0)].T >= batch.line_qty[:, None]
        ) & self.allowed_nodes
        nowhere = ~held.any(axis=1) & ~unknown
        for line in np.flatnonzero(nowhere):
            r = int(batch.line_order[line])
            out.setdefault(
                r, f"no node holds {int(batch.line_qty[line])} of SKU #{int(batch.line_sku[line])}"
            )
        no_lines = np.bincount(batch.line_order, minlength=len(o)) == 0
        for r in np.flatnonzero(no_lines):
            out.setdefault(int(r), "no lines")
        return out

    # --- candidates -----------------------------------------------------------------------

    def rows(self, batch: Batch, order_row, node, part, carrier, wave_us, contents=None):
        """Parcel rows: the order's columns (contents overridden for a split's parcels), the
        node, carrier, wave and the parcel's place in its order."""
        order_row = np.asarray(order_row, dtype=np.int64)
        o = batch.orders
        cols = {c: o[c].to_numpy()[order_row] for c in o.columns}
        if contents is not None:
            cols.update(contents)
        cols.update(
            order_row=order_row,
            node=np.asarray(node, dtype=np.int64),
            part=np.asarray(part, dtype=np.int64),
            carrier=np.asarray(carrier, dtype=np.int64),
            wave_us=np.asarray(wave_us, dtype=np.int64),
        )
        return pd.DataFrame(cols)

    def expand(self, batch: Batch, order_row, node, waves: int, carrier=None):
        """Each option (order, node) times its first `waves` reachable waves, times every
        carrier the shop ships that zone with (or the given carrier per option). Returns the
        option index, wave cut-off and carrier of every combination."""
        ordered = batch.orders.ordered_us.to_numpy()[order_row]
        cut = self.net.waves_after(node, ordered, waves)
        opt = np.repeat(np.arange(node.size), waves)
        wave = cut.reshape(-1)
        keep = wave < np.iinfo(np.int64).max
        opt, wave = opt[keep], wave[keep]
        if carrier is not None:
            return opt, wave, np.asarray(carrier)[opt]
        o = batch.orders
        zone = self.net.zone(
            node[opt],
            o.dest_city.to_numpy()[order_row[opt]],
            o.dest_province.to_numpy()[order_row[opt]],
        )
        i, c = np.nonzero(self.net.carriers_by_zone[zone])
        return opt[i], wave[i], c

    def best(self, batch: Batch, order_row, node, part, waves: int, estimate, contents=None):
        """Per (option, wave): the carrier with the lowest objective, as parcel rows with
        `option` and `objective`."""
        if isinstance(estimate, ModelEstimate):
            return self._best_by_parts(batch, order_row, node, part, waves, estimate, contents)
        opt, wave, carrier = self.expand(batch, order_row, node, waves)
        if not opt.size:
            return pd.DataFrame(columns=["option", "order_row", "node", "part", "wave_us"])
        picked = None if contents is None else {k: v[opt] for k, v in contents.items()}
        rows = self.rows(batch, order_row[opt], node[opt], part[opt], carrier, wave, picked)
        rows["option"] = opt
        est = estimate(rows)
        rows["objective"] = orders_objective(self.obj, self.net, rows, est)
        rows["est_cost"] = est.cost.to_numpy()
        rows["est_days"] = est.days.to_numpy()
        rows["est_latest_us"] = est.latest_us.to_numpy() if "latest_us" in est else -1
        order = np.lexsort((rows.objective.to_numpy(), wave, opt))
        rows = rows.iloc[order]
        first = np.r_[True, (np.diff(opt[order]) != 0) | (np.diff(wave[order]) != 0)]
        return rows[first].reset_index(drop=True)

    def _best_by_parts(self, batch, order_row, node, part, waves, estimate, contents):
        """`best` for the learned models, as a frame."""
        return pd.DataFrame(
            self._best_columns(batch, order_row, node, part, waves, estimate, contents)
        )

    def _best_columns(
        self, batch, order_row, node, part, waves, estimate, contents, orders=None
    ) -> dict[str, np.ndarray]:
        """`best` for the learned models as a dict of arrays: one prediction per (option,
        carrier), the waves weighed with arithmetic, and no row built for a combination that
        loses. Rows come by option, then wave. `orders`: `_order_columns(batch)` if at hand."""
        o = _order_columns(batch) if orders is None else orders
        zone = self.net.zone(node, o["dest_city"][order_row], o["dest_province"][order_row])
        i, c = np.nonzero(self.net.carriers_by_zone[zone])
        picked = None if contents is None else {k: v[i] for k, v in contents.items()}
        cost, mid, hi = estimate.order_parts(o, order_row[i], node[i], c, picked, zone[i])
        ordered = o["ordered_us"][order_row]
        cut = self.net.waves_after(node, ordered, waves)  # (options, waves)
        never = cut == np.iinfo(np.int64).max
        wave = cut[i]
        days = (wave - ordered[i, None]) / DAY_US + mid[:, None]
        latest = wave + (hi[:, None] * DAY_US).astype(np.int64)
        late = latest > o["promise_us"][order_row[i], None]
        store = (self.net.kind[node[i]] == 2)[:, None]
        obj = (
            cost[:, None]
            + self.obj.per_day * days
            + self.obj.late_penalty * late
            + self.obj.store_penalty * store
        )
        obj[never[i]] = np.inf
        # `np.nonzero` lists each option's carriers together, options in order: per option and
        # wave, the cheapest carrier (the first of equals) is a minimum over each run.
        if i.size:
            starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
            low = np.minimum.reduceat(obj, starts, axis=0)
            at = obj == np.repeat(low, np.diff(np.r_[starts, i.size]), axis=0)
            row = np.where(at, np.arange(i.size)[:, None], i.size)
            first = np.minimum.reduceat(row, starts, axis=0)  # (runs, waves); i.size: none
            ok = first < i.size
            first = np.minimum(first, i.size - 1)
            ok &= np.isfinite(np.take_along_axis(obj, first, axis=0))
            run, w = np.nonzero(ok)
            f = first[run, w]
        else:
            f = w = i
        return {
            "option": i[f],
            "order_row": order_row[i[f]],
            "node": node[i[f]],
            "part": part[i[f]],
            "carrier": c[f],
            "wave_us": wave[f, w],
            "objective": obj[f, w],
            "est_cost": cost[f],
            "est_days": days[f, w],
            "est_latest_us": latest[f, w],
        }

    def candidates(self, batch: Batch, estimate: Estimate, *, all_nodes: bool) -> pd.DataFrame:
        """Parcel rows of every candidate: `cand`, its order row, node, carrier, wave, part,
        `objective`, and `lines` (None: all the order's lines; else the parcel's)."""
        if isinstance(estimate, ModelEstimate):
            return self._candidates(batch, estimate, all_nodes=all_nodes).frame()
        return self._candidates_frame(batch, estimate, all_nodes=all_nodes)

    def _options(self, batch: Batch, skip: dict[int, str], all_nodes: bool):
        """The orders served, which nodes hold each whole, the distances, and the options:
        (order row, node) pairs of a node holding the whole order, nearest first per order."""
        n_o = len(batch.orders)
        served = np.ones(n_o, dtype=bool)
        served[list(skip)] = False
        whole = self.whole(batch, batch.stock) & served[:, None]
        dist = self.distance(batch)
        if all_nodes or self.search.nodes_per_order >= self.net.n:
            r, n = np.nonzero(whole)
        else:
            k = self.search.nodes_per_order
            d = np.where(whole, dist, np.inf)
            idx = np.argpartition(d, k - 1, axis=1)[:, :k]
            valid = np.isfinite(np.take_along_axis(d, idx, axis=1))
            r = np.repeat(np.arange(n_o), k)[valid.reshape(-1)]
            n = idx.reshape(-1)[valid.reshape(-1)]
        return served, whole, dist, r, n

    def _split_groups(self, batch: Batch, split_orders, lines_by_order, dist, how: str):
        """The parcels of every split order (order row, node, lines, part), and their contents."""
        groups = [
            (r, node, ls, p)
            for r in split_orders
            for p, (node, ls) in enumerate(self.split(batch, r, lines_by_order[r], dist[r], how))
        ]
        lines_of = [g[2] for g in groups]
        contents = {
            k: np.array([v[ls].sum() for ls in lines_of], dtype=np.float64)
            for k, v in (
                ("weight_kg", batch.line_weight),
                ("volume_cm3", batch.line_volume),
                ("units", batch.line_qty),
                ("value", batch.line_value),
            )
        }
        contents["fragile"] = np.array([float(batch.line_fragile[ls].any()) for ls in lines_of])
        return groups, lines_of, contents

    def _candidates(
        self,
        batch: Batch,
        estimate: ModelEstimate,
        *,
        all_nodes: bool,
        skip: dict[int, str] | None = None,
    ) -> _Parcels:
        """`candidates` for the learned models, kept as arrays (`skip`: `unservable`'s)."""
        n_o = len(batch.orders)
        skip = self.unservable(batch) if skip is None else skip
        served, whole, dist, r, n = self._options(batch, skip, all_nodes)
        lines_per_order = np.bincount(batch.line_order, minlength=n_o)
        orders = _order_columns(batch)
        best = self._best_columns(
            batch, r, n, np.zeros(r.size, np.int64), self.search.waves, estimate, None, orders
        )
        size = best["option"].size
        best["cand"] = np.arange(size)
        parts = [best]
        lines = [np.full(size, None, dtype=object)]
        explicit = [np.zeros(size, dtype=bool)]
        n_lines = [lines_per_order[best["order_row"]]]

        # Splits, only for orders no single node holds: their parcels leave with the first
        # wave they reach, by their best carrier.
        split_orders = np.flatnonzero(served & ~whole.any(axis=1))
        next_cand = size
        lines_by_order = _lines_by_order(batch.line_order, n_o) if split_orders.size else []
        for how in ("nearest", "fewest") if split_orders.size else ():
            groups, lines_of, contents = self._split_groups(
                batch, split_orders, lines_by_order, dist, how
            )
            if not groups:
                continue
            sb = self._best_columns(
                batch,
                np.array([g[0] for g in groups], dtype=np.int64),
                np.array([g[1] for g in groups], dtype=np.int64),
                np.array([g[3] for g in groups], dtype=np.int64),
                1,
                estimate,
                contents,
                orders,
            )
            option = sb["option"]
            sb["cand"] = next_cand + np.searchsorted(split_orders, sb["order_row"])
            next_cand += split_orders.size
            carried = np.empty(option.size, dtype=object)
            for j, g in enumerate(option.tolist()):
                carried[j] = lines_of[g]
            parts.append(sb)
            lines.append(carried)
            explicit.append(np.ones(option.size, dtype=bool))
            n_lines.append(np.array([ls.size for ls in lines_of], dtype=np.int64)[option])
        cols = {c: np.concatenate([p[c] for p in parts]) for c in best}
        _, inverse, counts = _unique_inverse(cols["cand"])
        n_parcels = counts[inverse]
        cols["objective"] = cols["objective"] + self.obj.split_penalty * (n_parcels - 1) / n_parcels
        return _Parcels(
            cols, np.concatenate(lines), np.concatenate(explicit), np.concatenate(n_lines)
        )

    def _candidates_frame(self, batch: Batch, estimate: Estimate, *, all_nodes: bool):
        """`candidates` for any estimate, through frames."""
        n_o = len(batch.orders)
        skip = self.unservable(batch)
        served, whole, dist, r, n = self._options(batch, skip, all_nodes)
        best = self.best(batch, r, n, np.zeros(r.size, np.int64), self.search.waves, estimate)
        best["cand"] = np.arange(len(best))
        best["lines"] = None
        parts = [best]

        # Splits, only for orders no single node holds: their parcels leave with the first
        # wave they reach, by their best carrier.
        split_orders = np.flatnonzero(served & ~whole.any(axis=1))
        next_cand = len(best)
        lines_by_order = _lines_by_order(batch.line_order, n_o) if split_orders.size else []
        for how in ("nearest", "fewest"):
            groups, lines_of, contents = self._split_groups(
                batch, split_orders, lines_by_order, dist, how
            )
            if not groups:
                continue
            sb = self.best(
                batch,
                np.array([g[0] for g in groups], dtype=np.int64),
                np.array([g[1] for g in groups], dtype=np.int64),
                np.array([g[3] for g in groups], dtype=np.int64),
                1,
                estimate,
                contents,
            )
            sb["lines"] = [lines_of[i] for i in sb.option.to_numpy()]
            first = {int(r): next_cand + i for i, r in enumerate(split_orders)}
            sb["cand"] = sb.order_row.map(first).to_numpy()
            next_cand += split_orders.size
            parts.append(sb)
        out = pd.concat(parts, ignore_index=True)
        n_parcels = out.groupby("cand").cand.transform("size").to_numpy()
        out["objective"] = out.objective + self.obj.split_penalty * (n_parcels - 1) / n_parcels
        return out

    def split(self, batch: Batch, r: int, lines: np.ndarray, dist: np.ndarray, how: str):
        """Lines spread over nodes: `nearest` sends each line to its nearest node holding it;
        `fewest` takes the node holding most of what is left (nearest first) until done."""
        held = (
            batch.stock[:, batch.line_sku[lines]].T >= batch.line_qty[lines, None]
        ) & self.allowed_nodes
        if how == "nearest":
            choice = np.argmin(np.where(held, dist[None, :], np.inf), axis=1)
        else:
            choice = np.full(lines.size, -1)
            left = np.ones(lines.size, dtype=bool)
            while left.any():
                count = (held & left[:, None]).sum(axis=0)
                best = np.flatnonzero(count == count.max())
                node = best[np.argmin(dist[best])]
                take = left & held[:, node]
                choice[take] = node
                left &= ~take
        return [(int(n), lines[choice == n]) for n in np.unique(choice)]

    # --- solving ----------------------------------------------------------------------------

    def problem(self, batch: Batch, cands: pd.DataFrame) -> Problem:
        """The optimiser's problem for `candidates`' rows."""
        return self._problem(batch, _Parcels.of_frame(cands, batch))[0]

    def _problem(self, batch: Batch, cands: _Parcels) -> tuple[Problem, np.ndarray]:
        """The optimiser's problem, and each parcel row's candidate (its position in it)."""
        n_sku = batch.stock.shape[1]
        cand_ids, pos, _ = _unique_inverse(cands["cand"])
        k = cand_ids.size
        order_row = cands["order_row"].astype(np.int64, copy=False)
        cand_order = np.zeros(k, dtype=np.int64)
        cand_order[pos] = order_row
        cand_cost = np.bincount(pos, weights=cands["objective"], minlength=k)
        # Stock: units per (node, sku) each candidate takes; a whole-order parcel takes all its
        # order's lines.
        c_rows, l_idx, parcel_of_line = self._parcel_lines(batch, cands, pos)
        node = cands["node"].astype(np.int64, copy=False)
        keys = node[parcel_of_line] * n_sku + batch.line_sku[l_idx]
        ukeys, kinv, _ = _unique_inverse(keys, bound=self.net.n * n_sku)
        stock_use = sparse.csr_array(
            (batch.line_qty[l_idx].astype(float), (c_rows, kinv)), shape=(k, ukeys.size)
        )
        stock = batch.stock.reshape(-1)[ukeys].astype(float)
        # Capacity: parcels per (node, wave).
        wave = cands["wave_us"].astype(np.int64, copy=False)
        slot_node, slot_wave, sinv = _slots(node, wave)
        slot_use = sparse.csr_array((np.ones(len(cands)), (pos, sinv)), shape=(k, slot_node.size))
        capacity = self.capacity_left_many(batch, slot_node, slot_wave).astype(float)
        problem = Problem(
            n_orders=len(batch.orders),
            cand_order=cand_order,
            cand_cost=cand_cost,
            stock_use=stock_use,
            stock=stock,
            slot_use=slot_use,
            capacity=capacity,
            arrival=batch.orders.ordered_us.to_numpy(),
            unserved_cost=self.search.unserved_cost,
        )
        return problem, pos

    def _parcel_lines(self, batch: Batch, cands: _Parcels, pos: np.ndarray):
        """For every line every parcel carries: the parcel's candidate position, the line, and
        the parcel."""
        counts = cands.n_lines
        order = np.argsort(batch.line_order, kind="stable")
        starts = np.searchsorted(batch.line_order[order], np.arange(len(batch.orders)))
        total = int(counts.sum())
        # A ragged arange: the k-th line of parcel i is order[starts[o_i] + k].
        first = np.repeat(np.cumsum(counts) - counts, counts)
        within = np.arange(total) - first
        parcel = np.repeat(np.arange(len(cands)), counts)
        o_row = cands["order_row"].astype(np.int64, copy=False)[parcel]
        lines = order[np.minimum(starts[o_row] + within, max(order.size - 1, 0))]
        if cands.explicit.any():
            mask = cands.explicit[parcel]
            lines[mask] = np.concatenate(list(cands.lines[cands.explicit]))
        return pos[parcel], lines, parcel

    def capacity_left_many(self, batch: Batch, node: np.ndarray, wave_us: np.ndarray):
        _, w = self.net.slot_of(node, wave_us)
        left = self.net.wave_capacity[node, w].astype(np.int64)
        if batch.used:
            used = [batch.used.get((int(a), int(b)), 0) for a, b in zip(node, wave_us, strict=True)]
            left = left - np.asarray(used, dtype=np.int64)
        return left

    def capacity_left(self, batch: Batch, slot: tuple[int, int]) -> int:
        return int(self.capacity_left_many(batch, np.array([slot[0]]), np.array([slot[1]]))[0])

    def plan(
        self, strategy: str, batch: Batch, estimate: Estimate, truth: Estimate | None = None
    ) -> Plan:
        if strategy == "nearest":
            return self.nearest(batch)
        unassigned = self.unservable(batch)
        if strategy == "clairvoyant":
            if truth is None:
                raise ValueError("the clairvoyant strategy needs the truth")
            estimate, all_nodes = truth, True
        else:
            all_nodes = False
        if isinstance(estimate, ModelEstimate):
            cands = self._candidates(batch, estimate, all_nodes=all_nodes, skip=dict(unassigned))
        else:
            frame = self._candidates_frame(batch, estimate, all_nodes=all_nodes)
            cands = _Parcels.of_frame(frame, batch)
        if not len(cands):
            return self._empty(strategy, batch, unassigned)
        problem, pos = self._problem(batch, cands)
        if strategy == "greedy":
            sol = solve_greedy(problem)
        else:
            sol = solve_mip(
                problem,
                time_limit=self.search.time_limit_seconds,
                mip_rel_gap=self.search.mip_rel_gap,
                max_mip_candidates=self.search.max_mip_candidates,
            )
        return self._from_solution(strategy, batch, cands, problem, sol, unassigned, pos)

    def _from_solution(
        self, strategy, batch, cands: _Parcels, problem: Problem, sol: Solution, unassigned, pos
    ) -> Plan:
        picked = np.zeros(problem.cand_order.size, dtype=bool)
        picked[sol.chosen[sol.chosen >= 0]] = True
        chosen = cands.take(picked[pos])
        for r in np.flatnonzero(sol.chosen < 0):
            unassigned.setdefault(int(r), "no node with stock and dispatch capacity left")
        stock_v, cap_v = violations(problem, sol.chosen)
        plan = self._plan_from_rows(strategy, batch, chosen, unassigned)
        plan.chosen = chosen.frame()
        plan.candidates = cands.frame()
        plan.predicted_objective = sol.objective
        plan.method, plan.gap, plan.seconds = sol.method, sol.gap, sol.seconds
        plan.stock_violations, plan.capacity_violations = stock_v, cap_v
        return plan

    def _plan_from_rows(self, strategy, batch: Batch, rows: _Parcels, unassigned) -> Plan:
        line_parcel = np.full(batch.line_order.size, -1, dtype=np.int64)
        if len(rows):
            parcel, lines, _ = self._parcel_lines(batch, rows, np.arange(len(rows)))
            line_parcel[lines] = parcel
        return Plan(
            strategy=strategy,
            parcel_order=rows["order_row"].astype(np.int64),
            parcel_node=rows["node"].astype(np.int64),
            parcel_carrier=rows["carrier"].astype(np.int64),
            parcel_wave=rows["wave_us"].astype(np.int64),
            parcel_part=rows["part"].astype(np.int64),
            line_parcel=line_parcel,
            unassigned=unassigned,
        )

    def _empty(self, strategy, batch, unassigned) -> Plan:
        z = np.zeros(0, dtype=np.int64)
        return Plan(strategy, z, z, z, z, z, np.full(batch.line_order.size, -1), unassigned)

    def nearest(self, batch: Batch) -> Plan:
        """The static rule: see the module's docstring. Capacity is not looked at; stock is."""
        n_o = len(batch.orders)
        unassigned = self.unservable(batch)
        stock = batch.stock.copy()
        dist = self.distance(batch)
        lines_by_order = _lines_by_order(batch.line_order, n_o)
        parcels: list[tuple[int, int, np.ndarray | None, int]] = []
        for r in np.argsort(batch.orders.ordered_us.to_numpy(), kind="stable"):
            r = int(r)
            if r in unassigned:
                continue
            ls = lines_by_order[r]
            held = (stock[:, batch.line_sku[ls]] >= batch.line_qty[ls][None, :]).all(
                axis=1
            ) & self.allowed_nodes
            if held.any():
                groups = [(int(np.argmin(np.where(held, dist[r], np.inf))), ls)]
            else:
                groups = self.split(
                    Batch(**{**batch.__dict__, "stock": stock}), r, ls, dist[r], "nearest"
                )
            for p, (node, part_lines) in enumerate(groups):
                np.subtract.at(
                    stock, (node, batch.line_sku[part_lines]), batch.line_qty[part_lines]
                )
                parcels.append((r, node, None if len(groups) == 1 else part_lines, p))
        r = np.array([x[0] for x in parcels], dtype=np.int64)
        node = np.array([x[1] for x in parcels], dtype=np.int64)
        part = np.array([x[3] for x in parcels], dtype=np.int64)
        o = batch.orders
        zone = self.net.zone(node, o.dest_city.to_numpy()[r], o.dest_province.to_numpy()[r])
        carrier = self.usual_carrier[zone] if r.size else np.zeros(0, dtype=np.int64)
        wave = self.net.waves_after(node, o.ordered_us.to_numpy()[r], 1)[:, 0]
        lines = np.empty(len(parcels), dtype=object)
        for j, x in enumerate(parcels):
            lines[j] = x[2]
        explicit = np.array([x[2] is not None for x in parcels], dtype=bool)
        n_lines = np.bincount(batch.line_order, minlength=n_o)[r]
        n_lines[explicit] = [ls.size for ls in lines[explicit]]
        cols = {"order_row": r, "node": node, "part": part, "carrier": carrier, "wave_us": wave}
        rows = _Parcels(cols, lines, explicit, n_lines)
        plan = self._plan_from_rows("nearest", batch, rows, unassigned)
        plan.method = "rule"
        plan.capacity_violations = self._over_capacity(batch, plan)
        plan.stock_violations = 0
        return plan

    def _over_capacity(self, batch: Batch, plan: Plan) -> int:
        """Waves the plan fills past their capacity."""
        if not plan.parcel_node.size:
            return 0
        slots, counts = np.unique(
            np.stack([plan.parcel_node, plan.parcel_wave], axis=1), axis=0, return_counts=True
        )
        return int((counts > self.capacity_left_many(batch, slots[:, 0], slots[:, 1])).sum())

    def commit(self, batch: Batch, plan: Plan) -> None:
        """Counts the plan's parcels against its waves' capacity (for the next batch)."""
        for s in zip(plan.parcel_node.tolist(), plan.parcel_wave.tolist(), strict=True):
            batch.used[s] = batch.used.get(s, 0) + 1


def _order_columns(batch: Batch) -> dict[str, np.ndarray]:
    """The batch's order columns as arrays, each read from the frame once."""
    o = batch.orders
    return {c: o[c].to_numpy() for c in o.columns}


def _lines_by_order(line_order: np.ndarray, n_orders: int) -> list[np.ndarray]:
    order = np.argsort(line_order, kind="stable")
    bounds = np.searchsorted(line_order[order], np.arange(n_orders + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_orders)]


class _Parcels:
    """Parcel rows as NumPy arrays, the frame `Router.candidates` returns made only when asked
    for. `cols`: every column of that frame but `lines`, in the frame's order; beside them, per
    parcel, `lines` (None when it carries all its order's lines, else those it carries),
    `explicit` (it lists its lines) and `n_lines` (how many lines it carries)."""

    def __init__(
        self,
        cols: dict[str, np.ndarray],
        lines: np.ndarray,
        explicit: np.ndarray,
        n_lines: np.ndarray,
        source: pd.DataFrame | None = None,
    ) -> None:
        self.cols, self.lines, self.explicit, self.n_lines = cols, lines, explicit, n_lines
        self.source = source

    @classmethod
    def of_frame(cls, rows: pd.DataFrame, batch: Batch) -> _Parcels:
        """The rows of a frame with `order_row` and `lines` (the frame is kept for `frame`)."""
        cols = {c: rows[c].to_numpy() for c in rows.columns if c != "lines"}
        if "lines" in rows:
            lines = rows["lines"].to_numpy()
        else:
            lines = np.full(len(rows), None, dtype=object)
        explicit = np.array([ls is not None for ls in lines], dtype=bool)
        per_order = np.bincount(batch.line_order, minlength=len(batch.orders))
        n_lines = per_order[rows.order_row.to_numpy(np.int64)]
        if explicit.any():
            n_lines[explicit] = [ls.size for ls in lines[explicit]]
        return cls(cols, lines, explicit, n_lines, source=rows)

    def __len__(self) -> int:
        return self.n_lines.size

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def take(self, keep: np.ndarray) -> _Parcels:
        """The rows `keep` (a mask or positions) selects, in their order."""
        return _Parcels(
            {c: v[keep] for c, v in self.cols.items()},
            self.lines[keep],
            self.explicit[keep],
            self.n_lines[keep],
        )

    def frame(self) -> pd.DataFrame:
        """The rows as a frame, `lines` last (the frame they came from, if they did)."""
        if self.source is not None:
            return self.source
        return pd.DataFrame({**self.cols, "lines": self.lines}, copy=False)


def _unique_inverse(
    values: np.ndarray, bound: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True, return_counts=True)` for integers, without the
    sort when it can: `values` already in order (runs of equal values), or all in [0, bound)
    with `bound` not much above their number (a table of which occur)."""
    values = np.asarray(values)
    n = values.size
    if n and values.dtype.kind in "iu":
        if n == 1 or (values[1:] >= values[:-1]).all():
            starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
            inverse = np.cumsum(np.r_[False, values[1:] != values[:-1]])
            return values[starts], inverse, np.diff(np.r_[starts, n])
        if bound is not None and bound <= 8 * n + 4096 and values.min() >= 0:
            counts = np.bincount(values, minlength=bound)
            present = counts > 0
            index = np.cumsum(present) - 1
            return np.flatnonzero(present), index[values], counts[present]
    return np.unique(values, return_inverse=True, return_counts=True)


def _slots(node: np.ndarray, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (node, wave) pairs by node then wave, and each row's pair: `np.unique` of
    the stacked pairs, on one integer key when it fits in 62 bits."""
    if node.size and node.min() >= 0:
        low = int(wave.min())
        span = int(wave.max()) - low + 1
        if (int(node.max()) + 1) * span < 2**62:
            keys, inverse, _ = _unique_inverse(node * span + (wave - low))
            return keys // span, keys % span + low, inverse.reshape(-1)
    slots, inverse = np.unique(np.stack([node, wave], axis=1), axis=0, return_inverse=True)
    return slots[:, 0], slots[:, 1], inverse.reshape(-1)
