"""The carrier tariff and transit times, learned from the shop's own shipments.

Carriers price a parcel by its billed weight, the larger of its actual weight and its volumetric
weight (volume over a divisor, cm3 per kg): a first-kg price, plus a price per started kg beyond
the first, both by destination zone and carrier, plus the node's picking cost, by node kind::

    cost = round(first[zone, carrier] + next_kg[zone, carrier] * extra_kg + pick[kind], 2)
    extra_kg = ceil(max(billed_kg - 1, 0))

The service may not read the simulator's price list, so `fit_tariff` learns it from history:
the divisor from parcels billed by volume, the prices by least squares. The picking cost's level
cannot be told apart from the first-kg price (every parcel pays one of each), so the cheapest
kind's picking cost is pinned at 0 and folded into `first`: `pick[kind]` is what a kind costs to
pick above the cheapest one. Costs, the only thing used downstream, come out the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Pair = tuple[str, str]

SHIPMENT_COLUMNS = (
    "zone",
    "carrier",
    "node_id",
    "actual_weight_kg",
    "volume_cm3",
    "billed_weight_kg",
    "cost",
)


def require(frame: pd.DataFrame, table: str, columns: tuple[str, ...]) -> None:
    """Raise ValueError naming the first of `columns` that `frame` (the table `table`) lacks."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"{table} has no column {column!r}")


def extra_kg(billed_kg: np.ndarray) -> np.ndarray:
    """Started kilograms beyond the first (the 1e-9 keeps exact kilograms in their bracket)."""
    return np.ceil(np.maximum(np.asarray(billed_kg, dtype=float) - 1.0, 0.0) - 1e-9)


@dataclass(frozen=True)
class Tariff:
    """A carrier price list.

    Attributes
    ----------
    divisor : cm3 per kg of volumetric weight.
    first : price of the first kg, by (zone, carrier); includes the cheapest kind's picking.
    next_kg : price of each started kg beyond the first, by (zone, carrier).
    pick : picking cost by node kind, above the cheapest kind's (which is 0).
    """

    divisor: float
    first: dict[Pair, float]
    next_kg: dict[Pair, float]
    pick: dict[str, float]

    def __post_init__(self) -> None:
        if not self.divisor > 0:
            raise ValueError(f"the volumetric divisor must be positive, not {self.divisor}")
        if set(self.first) != set(self.next_kg):
            raise ValueError("first and next_kg must price the same (zone, carrier) pairs")

    def billed(self, weight_kg: np.ndarray, volume_cm3: np.ndarray) -> np.ndarray:
        """Billed weight: the larger of the actual and the volumetric weight."""
        weight = np.asarray(weight_kg, dtype=float)
        return np.maximum(weight, np.asarray(volume_cm3, dtype=float) / self.divisor)

    def rates(
        self, zone: np.ndarray, carrier: np.ndarray, node_kind: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First-kg price, price per extra kg and picking cost of each parcel.

        Raises ValueError naming a (zone, carrier) pair or node kind the tariff does not price.
        """
        pairs = pd.MultiIndex.from_arrays(
            [np.asarray(zone, dtype=object), np.asarray(carrier, dtype=object)]
        )
        known = pd.MultiIndex.from_tuples(list(self.first), names=None)
        at = known.get_indexer(pairs) if len(known) else np.full(len(pairs), -1)
        if (at < 0).any():
            z, c = pairs[int(np.argmax(at < 0))]
            raise ValueError(f"the tariff has no price for zone {z!r} with carrier {c!r}")
        kinds = pd.Index(list(self.pick))
        k = kinds.get_indexer(np.asarray(node_kind, dtype=object))
        if (k < 0).any():
            raise ValueError(
                f"the tariff has no picking cost for node kind {node_kind[int(np.argmax(k < 0))]!r}"
            )
        first = np.array([self.first[p] for p in known], dtype=float)
        nxt = np.array([self.next_kg[p] for p in known], dtype=float)
        pick = np.array([self.pick[x] for x in kinds], dtype=float)
        return first[at], nxt[at], pick[k]

    def cost(
        self, zone: np.ndarray, carrier: np.ndarray, node_kind: np.ndarray, billed_kg: np.ndarray
    ) -> np.ndarray:
        """Price of each parcel, rounded to cents as carriers bill."""
        first, nxt, pick = self.rates(zone, carrier, node_kind)
        return np.round(first + nxt * extra_kg(billed_kg) + pick, 2)


def fit_tariff(
    shipments: pd.DataFrame, nodes: pd.DataFrame, *, divisor: float | None = None
) -> Tariff:
    """Learn the tariff from past shipments (raw `shipments`) and the nodes' kinds (raw `nodes`).

    The divisor is the median of volume / billed weight over parcels billed above their actual
    weight (pass `divisor` when no parcel was). The prices solve least squares of cost on a
    first-kg and a per-extra-kg price per (zone, carrier) and a picking cost per node kind;
    identical rows are pooled first (least squares on repeated rows equals least squares on their
    means weighted by count), so the solve is tiny whatever the history's length. A pair or kind
    seen too little to tell its prices apart gets numpy's minimum-norm solution, which still
    reproduces the costs it was seen at.
    """
    require(shipments, "shipments", SHIPMENT_COLUMNS)
    require(nodes, "nodes", ("node_id", "kind"))
    rows = shipments.loc[:, list(SHIPMENT_COLUMNS)].dropna()
    if rows.empty:
        raise ValueError("shipments holds no priced parcel to learn the tariff from")
    kind_of = nodes.drop_duplicates("node_id").set_index("node_id")["kind"]
    kind = rows["node_id"].map(kind_of)
    if kind.isna().any():
        missing = rows["node_id"][kind.isna()].iloc[0]
        raise ValueError(f"shipments name node {missing!r}, which nodes lacks")

    actual = rows["actual_weight_kg"].to_numpy(float)
    billed = rows["billed_weight_kg"].to_numpy(float)
    if divisor is None:
        by_volume = billed > actual + 1e-6
        if not by_volume.any():
            raise ValueError(
                "no shipment was billed above its actual weight: the volumetric divisor "
                "cannot be learned; pass divisor="
            )
        divisor = float(
            np.median(rows["volume_cm3"].to_numpy(float)[by_volume] / billed[by_volume])
        )

    pooled = (
        pd.DataFrame(
            {
                "zone": rows["zone"].astype(str).to_numpy(),
                "carrier": rows["carrier"].astype(str).to_numpy(),
                "kind": kind.astype(str).to_numpy(),
                "extra": extra_kg(billed),
                "cost": rows["cost"].to_numpy(float),
            }
        )
        .groupby(["zone", "carrier", "kind", "extra"], sort=True)["cost"]
        .agg(["mean", "size"])
        .reset_index()
    )
    pair_code, pairs = pd.factorize(
        pd.MultiIndex.from_arrays([pooled["zone"], pooled["carrier"]]), sort=True
    )
    kind_code, kinds = pd.factorize(pooled["kind"], sort=True)
    n, n_pairs, n_kinds = len(pooled), len(pairs), len(kinds)
    # Columns: first per pair, next per pair, pick per kind but the first (its level is `first`'s).
    x = np.zeros((n, 2 * n_pairs + n_kinds - 1))
    x[np.arange(n), pair_code] = 1.0
    x[np.arange(n), n_pairs + pair_code] = pooled["extra"].to_numpy()
    other = kind_code > 0
    x[np.flatnonzero(other), 2 * n_pairs + kind_code[other] - 1] = 1.0
    w = np.sqrt(pooled["size"].to_numpy(float))
    beta = np.linalg.lstsq(x * w[:, None], pooled["mean"].to_numpy() * w, rcond=None)[0]

    pick = np.r_[0.0, beta[2 * n_pairs :]]
    cheapest = pick.min()  # pin the cheapest kind at 0; its picking moves into `first`
    return Tariff(
        divisor=divisor,
        first=complete({p: float(beta[i] + cheapest) for i, p in enumerate(pairs)}),
        next_kg=complete({p: float(beta[n_pairs + i]) for i, p in enumerate(pairs)}),
        pick={str(k): float(pick[i] - cheapest) for i, k in enumerate(kinds)},
    )


def complete(table: dict[Pair, float]) -> dict[Pair, float]:
    """Every (zone, carrier) pair of the zones and carriers seen, the unseen ones estimated.

    Carriers price zones in proportion (a premium carrier costs about the same multiple
    everywhere), so log price = zone effect + carrier effect, fitted by least squares on the
    pairs seen, fills a pair the history never used: express upgrades, say, that send a parcel
    by the premium carrier to a zone the shop only ever served with a cheap one. Seen pairs keep
    their own values."""
    zones = sorted({z for z, _ in table})
    carriers = sorted({c for _, c in table})
    seen = [(z, c) for z in zones for c in carriers if (z, c) in table and table[(z, c)] > 0]
    if len(seen) == len(zones) * len(carriers) or not seen:
        return dict(table)
    x = np.zeros((len(seen), len(zones) + len(carriers)))
    for row, (z, c) in enumerate(seen):
        x[row, zones.index(z)] = 1.0
        x[row, len(zones) + carriers.index(c)] = 1.0
    y = np.log([table[p] for p in seen])
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    out = dict(table)
    for z in zones:
        for c in carriers:
            if (z, c) not in out:
                effect = beta[zones.index(z)] + beta[len(zones) + carriers.index(c)]
                out[(z, c)] = float(np.exp(effect))
    return out


def fit_transit(shipments: pd.DataFrame, *, quantile: float = 0.9) -> dict[Pair, float]:
    """Days in transit (shipped to delivered) that `quantile` of past parcels stayed within, by
    (zone, carrier): what a delivery promise can count on. Parcels not yet delivered are left
    out (they bias it low a little while they are in transit)."""
    require(shipments, "shipments", ("zone", "carrier", "shipped_at", "delivered_at"))
    rows = shipments.dropna(subset=["zone", "carrier", "shipped_at", "delivered_at"])
    days = (rows["delivered_at"] - rows["shipped_at"]) / pd.Timedelta(days=1)
    table = days.groupby([rows["zone"].astype(str), rows["carrier"].astype(str)]).quantile(quantile)
    return complete({(str(z), str(c)): float(v) for (z, c), v in table.items()})
