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
- `optimal`: the mixed-integer program over all orders' candidates (`_route_opt.solve_mip`).
- `clairvoyant`: the same program over every node, carrier and wave, scored by the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from cadence.models._route_code import Stored, predict, quantile_column
from cadence.models._route_inputs import (
    CARRIERS,
    DAY_US,
    Network,
    haversine,
    pair_frame,
)
from cadence.models._route_opt import Problem, Solution, solve_greedy, solve_mip, violations

STRATEGIES = ("nearest", "greedy", "optimal", "clairvoyant")


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


# An estimate scores parcel rows (one per order row, node, carrier, wave, contents): it returns
# cost, days from the order to arrival, and whether it misses the promise (a 0/1 or a chance).
Estimate = Callable[[pd.DataFrame], pd.DataFrame]


def model_estimate(
    stored: Stored,
    net: Network,
    weather: pd.DataFrame,
    node_features,
    refund_share: float,
    damage_weight: float,
) -> Estimate:
    """What the learned models expect: cost plus expected damage loss, days at the median,
    and a miss when the upper quantile arrives after the promise."""
    q_hi = quantile_column(max(stored.settings["quantiles"]))
    q_mid = quantile_column(min(stored.settings["quantiles"], key=lambda q: abs(q - 0.5)))

    def estimate(rows: pd.DataFrame) -> pd.DataFrame:
        frame = pair_frame(
            net,
            rows,
            rows.node.to_numpy(),
            rows.carrier.to_numpy(),
            rows.wave_us.to_numpy(),
            weather,
            node_features,
        )
        p = predict(stored, frame)
        wait = (rows.wave_us.to_numpy() - rows.ordered_us.to_numpy()) / DAY_US
        hi = rows.wave_us.to_numpy() + (p[q_hi].to_numpy() * DAY_US).astype(np.int64)
        return pd.DataFrame(
            {
                "cost": p.cost.to_numpy()
                + damage_weight * p.damage.to_numpy() * rows.value.to_numpy() * refund_share,
                "days": wait + p[q_mid].to_numpy(),
                "late": (hi > rows.promise_us.to_numpy()).astype(np.float64),
            },
            index=rows.index,
        )

    return estimate


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


def _contents(batch: Batch, lines: np.ndarray) -> dict[str, float]:
    return {
        "weight_kg": float(batch.line_weight[lines].sum()),
        "volume_cm3": float(batch.line_volume[lines].sum()),
        "fragile": float(batch.line_fragile[lines].any()),
        "units": float(batch.line_qty[lines].sum()),
        "value": float(batch.line_value[lines].sum()),
    }


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

    def parcel_rows(self, batch: Batch, order_rows, nodes, lines_of, part) -> pd.DataFrame:
        """One row per parcel option with the order's columns, node and contents."""
        o = batch.orders.iloc[np.asarray(order_rows)]
        rows = o.reset_index(drop=True).copy()
        contents = pd.DataFrame([_contents(batch, ls) for ls in lines_of])
        for c in contents.columns:
            rows[c] = contents[c].to_numpy() if len(contents) else np.zeros(0)
        rows["node"] = np.asarray(nodes, dtype=np.int64)
        rows["part"] = np.asarray(part, dtype=np.int64)
        rows["order_row"] = np.asarray(order_rows, dtype=np.int64)
        return rows

    def with_waves_and_carriers(
        self, rows: pd.DataFrame, carriers: str | np.ndarray
    ) -> pd.DataFrame:
        """Each parcel option times the first `waves` waves it can reach, times each carrier
        the shop ships that zone with (`carriers="allowed"`) or a fixed carrier per row."""
        k = self.search.waves
        waves = self.net.waves_after(rows.node.to_numpy(), rows.ordered_us.to_numpy(), k)
        rep = rows.loc[rows.index.repeat(k)].reset_index(drop=True)
        rep["option"] = np.repeat(np.arange(len(rows)), k)
        rep["wave_us"] = waves.reshape(-1)
        rep = rep[rep.wave_us < np.iinfo(np.int64).max].reset_index(drop=True)
        zone = self.net.zone(
            rep.node.to_numpy(), rep.dest_city.to_numpy(), rep.dest_province.to_numpy()
        )
        if isinstance(carriers, str):
            allowed = self.net.carriers_by_zone[zone]  # (rows, carriers)
            r, c = np.nonzero(allowed)
            rep = rep.iloc[r].reset_index(drop=True)
            rep["carrier"] = c
        else:
            rep["carrier"] = np.asarray(carriers)[rep.option.to_numpy()]
        return rep

    def best_carrier(self, rep: pd.DataFrame, estimate: Estimate) -> pd.DataFrame:
        """Per (option, wave): the carrier with the lowest objective, and that objective."""
        if rep.empty:
            return rep.assign(objective=np.zeros(0))
        est = estimate(rep)
        rep = rep.assign(objective=orders_objective(self.obj, self.net, rep, est))
        best = rep.groupby(["option", "wave_us"]).objective.idxmin()
        return rep.loc[best.to_numpy()].reset_index(drop=True)

    def candidates(self, batch: Batch, estimate: Estimate, *, all_nodes: bool) -> pd.DataFrame:
        """Parcel options of every candidate: one row per parcel with `cand`, its order row,
        node, carrier, wave, part, the lines it carries (`lines`), and the objective."""
        n_o = len(batch.orders)
        skip = self.unservable(batch)
        whole = self.whole(batch, batch.stock)
        dist = self.distance(batch)
        lines_by_order = _lines_by_order(batch.line_order, n_o)
        order_rows, nodes, lines_of = [], [], []
        for r in range(n_o):
            if r in skip:
                continue
            can = np.flatnonzero(whole[r])
            if can.size:
                if not all_nodes and can.size > self.search.nodes_per_order:
                    can = can[
                        np.argsort(dist[r, can], kind="stable")[: self.search.nodes_per_order]
                    ]
                order_rows += [r] * can.size
                nodes += list(can)
                lines_of += [lines_by_order[r]] * can.size
        whole_rows = self.parcel_rows(batch, order_rows, nodes, lines_of, np.zeros(len(nodes)))
        whole_rows["lines"] = lines_of
        rep = self.with_waves_and_carriers(whole_rows, "allowed")
        best = self.best_carrier(rep, estimate)
        best["cand"] = np.arange(len(best))
        best["lines"] = [whole_rows.lines.iloc[i] for i in best.option.to_numpy()]
        parts = [best]

        # Splits, only for orders no single node holds.
        split_orders = [r for r in range(n_o) if r not in skip and not whole[r].any()]
        next_cand = len(best)
        for how in ("nearest", "fewest"):
            rows = []
            for r in split_orders:
                for p, (node, ls) in enumerate(
                    self.split(batch, r, lines_by_order[r], dist[r], how)
                ):
                    rows.append((r, node, ls, p))
            if not rows:
                continue
            pr = self.parcel_rows(
                batch,
                [x[0] for x in rows],
                [x[1] for x in rows],
                [x[2] for x in rows],
                [x[3] for x in rows],
            )
            pr["lines"] = [x[2] for x in rows]
            # A split's parcels leave with the first wave they reach, by their best carrier.
            saved = self.search
            self.search = Search(**{**saved.__dict__, "waves": 1})
            try:
                rep = self.with_waves_and_carriers(pr, "allowed")
            finally:
                self.search = saved
            sb = self.best_carrier(rep, estimate)
            sb["lines"] = [pr.lines.iloc[i] for i in sb.option.to_numpy()]
            first = {r: next_cand + i for i, r in enumerate(split_orders)}
            sb["cand"] = sb.order_row.map(first).to_numpy()
            next_cand += len(split_orders)
            parts.append(sb)
        out = pd.concat(parts, ignore_index=True)
        n_parcels = out.groupby("cand").cand.transform("size")
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

    def problem(self, batch: Batch, cands: pd.DataFrame) -> tuple[Problem, list[tuple[int, int]]]:
        n_sku = batch.stock.shape[1]
        cand_ids = np.sort(cands.cand.unique())
        k = cand_ids.size
        pos = np.full(cand_ids.max() + 1 if k else 0, -1)
        pos[cand_ids] = np.arange(k)
        first = cands.groupby("cand").order_row.first()
        cand_order = first.reindex(cand_ids).to_numpy()
        cand_cost = cands.groupby("cand").objective.sum().reindex(cand_ids).to_numpy()
        # Stock: units per (node, sku) each candidate takes.
        c_rows, keys, qty = [], [], []
        for c, node, ls in zip(
            cands.cand.to_numpy(), cands.node.to_numpy(), cands.lines, strict=True
        ):
            c_rows.append(np.full(ls.size, pos[c]))
            keys.append(node * n_sku + batch.line_sku[ls])
            qty.append(batch.line_qty[ls])
        c_rows = np.concatenate(c_rows) if c_rows else np.zeros(0, int)
        keys = np.concatenate(keys) if keys else np.zeros(0, int)
        qty = np.concatenate(qty) if qty else np.zeros(0)
        ukeys, kinv = np.unique(keys, return_inverse=True)
        stock_use = sparse.csr_array((qty.astype(float), (c_rows, kinv)), shape=(k, ukeys.size))
        stock = batch.stock.reshape(-1)[ukeys].astype(float)
        # Capacity: parcels per (node, wave).
        slots = list(
            zip(cands.node.to_numpy().tolist(), cands.wave_us.to_numpy().tolist(), strict=True)
        )
        uslots = sorted(set(slots))
        sid = {s: i for i, s in enumerate(uslots)}
        slot_use = sparse.csr_array(
            (np.ones(len(slots)), (pos[cands.cand.to_numpy()], [sid[s] for s in slots])),
            shape=(k, len(uslots)),
        )
        capacity = np.array([self.capacity_left(batch, s) for s in uslots], dtype=float)
        arrival = batch.orders.ordered_us.to_numpy()
        return (
            Problem(
                n_orders=len(batch.orders),
                cand_order=cand_order.astype(np.int64),
                cand_cost=cand_cost.astype(float),
                stock_use=stock_use,
                stock=stock,
                slot_use=slot_use,
                capacity=capacity,
                arrival=arrival,
                unserved_cost=self.search.unserved_cost,
            ),
            uslots,
        )

    def capacity_left(self, batch: Batch, slot: tuple[int, int]) -> int:
        node, wave_us = slot
        _, w = self.net.slot_of(np.array([node]), np.array([wave_us]))
        return int(self.net.wave_capacity[node, w[0]]) - batch.used.get(slot, 0)

    def plan(
        self, strategy: str, batch: Batch, estimate: Estimate, truth: Estimate | None = None
    ) -> Plan:
        if strategy == "nearest":
            return self.nearest(batch)
        if strategy == "clairvoyant":
            if truth is None:
                raise ValueError("the clairvoyant strategy needs the truth")
            cands = self.candidates(batch, truth, all_nodes=True)
        else:
            cands = self.candidates(batch, estimate, all_nodes=False)
        unassigned = self.unservable(batch)
        if cands.empty:
            return self._empty(strategy, batch, unassigned)
        problem, _ = self.problem(batch, cands)
        if strategy == "greedy":
            sol = solve_greedy(problem)
        else:
            sol = solve_mip(
                problem,
                time_limit=self.search.time_limit_seconds,
                mip_rel_gap=self.search.mip_rel_gap,
            )
        return self._from_solution(strategy, batch, cands, problem, sol, unassigned)

    def _from_solution(
        self, strategy, batch, cands, problem: Problem, sol: Solution, unassigned
    ) -> Plan:
        cand_ids = np.sort(cands.cand.unique())
        chosen_ids = set(cand_ids[sol.chosen[sol.chosen >= 0]].tolist())
        chosen = cands[cands.cand.isin(chosen_ids)]
        for r in np.flatnonzero(sol.chosen < 0):
            unassigned.setdefault(int(r), "no node with stock and dispatch capacity left")
        stock_v, cap_v = violations(problem, sol.chosen)
        plan = self._plan_from_rows(strategy, batch, chosen, unassigned)
        plan.predicted_objective = sol.objective
        plan.method, plan.gap, plan.seconds = sol.method, sol.gap, sol.seconds
        plan.stock_violations, plan.capacity_violations = stock_v, cap_v
        return plan

    def _plan_from_rows(self, strategy, batch: Batch, rows: pd.DataFrame, unassigned) -> Plan:
        line_parcel = np.full(batch.line_order.size, -1, dtype=np.int64)
        for i, ls in enumerate(rows.lines):
            line_parcel[ls] = i
        return Plan(
            strategy=strategy,
            parcel_order=rows.order_row.to_numpy(np.int64),
            parcel_node=rows.node.to_numpy(np.int64),
            parcel_carrier=rows.carrier.to_numpy(np.int64),
            parcel_wave=rows.wave_us.to_numpy(np.int64),
            parcel_part=rows.part.to_numpy(np.int64),
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
        rows = []
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
                rows.append((r, node, part_lines, p))
        pr = self.parcel_rows(
            batch,
            [x[0] for x in rows],
            [x[1] for x in rows],
            [x[2] for x in rows],
            [x[3] for x in rows],
        )
        pr["lines"] = [x[2] for x in rows]
        if len(pr):
            zone = self.net.zone(
                pr.node.to_numpy(), pr.dest_city.to_numpy(), pr.dest_province.to_numpy()
            )
            pr["carrier"] = self.usual_carrier[zone]
            pr["wave_us"] = self.net.waves_after(pr.node.to_numpy(), pr.ordered_us.to_numpy(), 1)[
                :, 0
            ]
        else:
            pr["carrier"] = pr["wave_us"] = np.zeros(0, dtype=np.int64)
        plan = self._plan_from_rows("nearest", batch, pr, unassigned)
        plan.method = "rule"
        plan.capacity_violations = self._over_capacity(batch, plan)
        plan.stock_violations = 0
        return plan

    def _over_capacity(self, batch: Batch, plan: Plan) -> int:
        """Waves the plan fills past their capacity."""
        slots = pd.Series(
            list(zip(plan.parcel_node.tolist(), plan.parcel_wave.tolist(), strict=True))
        )
        if slots.empty:
            return 0
        counts = slots.value_counts()
        return int(sum(n > self.capacity_left(batch, s) for s, n in counts.items()))

    def commit(self, batch: Batch, plan: Plan) -> None:
        """Counts the plan's parcels against its waves' capacity (for the next batch)."""
        for s in zip(plan.parcel_node.tolist(), plan.parcel_wave.tolist(), strict=True):
            batch.used[s] = batch.used.get(s, 0) + 1


def _lines_by_order(line_order: np.ndarray, n_orders: int) -> list[np.ndarray]:
    order = np.argsort(line_order, kind="stable")
    bounds = np.searchsorted(line_order[order], np.arange(n_orders + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_orders)]


def carrier_names(idx: np.ndarray) -> np.ndarray:
    return np.asarray(CARRIERS)[idx]
