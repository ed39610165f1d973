"""What routing knows: the shop's network, its history of parcels, and the rows its models read.

`Network.from_raw` learns the network from the raw tables alone: nodes, dispatch waves (cut-off
and capacity), which provinces are remote (parcels there were billed as remote), the promise per
zone (from the promises made at checkout), which carriers serve which zone (those the shop has
shipped with), and the share of a damaged parcel's value that came back as refunds.

`pair_frame` turns (order, node, carrier, wave) choices into the models' input rows; the
training rows are the history's parcels through the same function, so training and deciding
read the same columns, computed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cadence.ingest._tables import NODE_KINDS, ZONES

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
US = 1_000_000
EARTH_KM = 6371.0
CARRIERS = ("swift", "national", "budget", "metro")
_NEVER = np.iinfo(np.int64).max

# The tables routing reads; an imported order log has none of them but orders.
NEEDED = ("nodes", "dispatch_waves", "inventory", "products", "users", "shipments", "order_items")

# The models' inputs, in order. Node features (`routing_v1`) follow when the build made them.
ORDER_COLUMNS = (
    "dest_lat",
    "dest_lon",
    "dest_tier",
    "dest_region",
    "weight_kg",
    "volume_cm3",
    "fragile",
    "units",
    "value",
    "order_hour",
    "weekday",
)
PAIR_COLUMNS = (
    "distance_km",
    "zone",
    "node_kind",
    "carrier",
    "node_lat",
    "node_lon",
    "node_region",
    "wait_hours",
    "storm_origin",
    "storm_dest",
)


class RoutingDataError(ValueError):
    """The workspace lacks what routing needs; the message names the table or column."""


def missing_tables(raw: Path) -> list[str]:
    return [t for t in NEEDED if not (raw / f"{t}.parquet").exists()]


def haversine(lat1, lon1, lat2, lon2) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin((np.radians(lon2) - np.radians(lon1)) / 2) ** 2
    )
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


@dataclass
class Network:
    """Nodes and what the history tells about shipping from them (arrays indexed by node)."""

    node_id: np.ndarray
    kind: np.ndarray  # index into NODE_KINDS
    city: np.ndarray  # city name
    province: np.ndarray
    region: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    wave_cutoff_min: np.ndarray  # (nodes, max waves) minutes after midnight UTC; nan: no wave
    wave_capacity: np.ndarray  # (nodes, max waves) parcels
    regions: tuple[str, ...]
    remote_provinces: frozenset[str]
    promise_days: np.ndarray  # per zone: whole days after the order's day
    carrier_parcels: np.ndarray  # (zones, carriers): parcels the shop sent so
    carriers_by_zone: np.ndarray  # (zones, carriers) bool: offered (enough parcels seen)
    damage_refund_share: float
    lead_hours: float

    @classmethod
    def from_raw(cls, raw: Path, *, lead_hours: float, min_carrier_parcels: int) -> Network:
        lacking = missing_tables(raw)
        if not (raw / "orders.parquet").exists():
            raise RoutingDataError(f"no data in {raw}: generate a world or import an order log")
        if lacking:
            raise RoutingDataError(
                f"routing needs the tables {', '.join(lacking)} in {raw}, which an order log "
                "alone does not have: routing learns from a shop's nodes, stock and parcels"
            )
        nodes = pd.read_parquet(raw / "nodes.parquet")
        waves = pd.read_parquet(raw / "dispatch_waves.parquet")
        ships = pd.read_parquet(
            raw / "shipments.parquet",
            columns=["order_id", "zone", "carrier", "promised_at", "damaged", "shipment_id"],
        )
        if ships.empty:
            raise RoutingDataError(f"{raw / 'shipments.parquet'} holds no parcels to learn from")
        orders = pd.read_parquet(
            raw / "orders.parquet", columns=["order_id", "user_id", "ordered_at"]
        )
        users = pd.read_parquet(raw / "users.parquet", columns=["user_id", "province", "region"])
        index = {n: i for i, n in enumerate(nodes.node_id)}
        width = int(waves.groupby("node_id").size().max())
        cutoff = np.full((len(nodes), width), np.nan)
        capacity = np.zeros((len(nodes), width), dtype=np.int64)
        w = waves.sort_values(["node_id", "wave"])
        rank = w.groupby("node_id").cumcount().to_numpy()
        rows = w.node_id.map(index).to_numpy()
        cutoff[rows, rank] = w.cutoff_minute.to_numpy()
        capacity[rows, rank] = w.capacity.to_numpy()

        s = ships.merge(orders, on="order_id").merge(users, on="user_id")
        remote = frozenset(s.province[s.zone == "remote"].unique())
        day0 = s.ordered_at.dt.floor("D")
        promised = ((s.promised_at - day0) / pd.Timedelta(days=1)).round().astype(int) - 1
        promise = np.zeros(len(ZONES), dtype=np.int64)
        for z, name in enumerate(ZONES):
            seen = promised[s.zone == name]
            promise[z] = int(seen.mode().iloc[0]) if len(seen) else int(promised.max())
        counts = pd.crosstab(s.zone, s.carrier)
        parcels = np.zeros((len(ZONES), len(CARRIERS)), dtype=np.int64)
        for z, zone in enumerate(ZONES):
            for c, carrier in enumerate(CARRIERS):
                if zone in counts.index and carrier in counts.columns:
                    parcels[z, c] = counts.loc[zone, carrier]
        return cls(
            node_id=nodes.node_id.to_numpy(),
            kind=nodes.kind.map({k: i for i, k in enumerate(NODE_KINDS)}).to_numpy(),
            city=nodes.city.to_numpy(),
            province=nodes.province.to_numpy(),
            region=nodes.region.to_numpy(),
            lat=nodes.lat.to_numpy(),
            lon=nodes.lon.to_numpy(),
            wave_cutoff_min=cutoff,
            wave_capacity=capacity,
            regions=tuple(sorted(set(users.region) | set(nodes.region))),
            remote_provinces=remote,
            promise_days=promise,
            carrier_parcels=parcels,
            carriers_by_zone=parcels >= min_carrier_parcels,
            damage_refund_share=_damage_refund_share(raw, ships),
            lead_hours=lead_hours,
        )

    @property
    def n(self) -> int:
        return self.node_id.size

    def zone(self, node: np.ndarray, city, province) -> np.ndarray:
        """0 same city, 1 same province, 2 cross-region, 3 remote destination."""
        city, province = np.asarray(city), np.asarray(province)
        remote = np.isin(province, list(self.remote_provinces))
        return np.where(
            self.city[node] == city,
            0,
            np.where(self.province[node] == province, 1, np.where(remote, 3, 2)),
        )

    def promise_us(self, ordered_us: np.ndarray, city, province) -> np.ndarray:
        """The promise made at checkout: the best zone any warehouse (not a store) reaches."""
        warehouses = np.flatnonzero(self.kind < 2)
        zones = self.zone(
            warehouses[None, :], np.asarray(city)[:, None], np.asarray(province)[:, None]
        )
        day0 = np.asarray(ordered_us) // DAY_US * DAY_US
        return day0 + (self.promise_days[zones.min(axis=1)] + 1) * DAY_US

    def waves_after(self, node: np.ndarray, ordered_us: np.ndarray, k: int) -> np.ndarray:
        """The cut-off instants (us) of the first `k` waves each order can still reach at
        `node` (shape (len, k)), counting from the order's day and running three days on;
        beyond them, `_NEVER`."""
        node = np.asarray(node)
        ordered_us = np.asarray(ordered_us)
        width = self.wave_cutoff_min.shape[1]
        day0 = ordered_us // DAY_US * DAY_US
        out = np.full((node.size, k), _NEVER, dtype=np.int64)
        reach = ordered_us + int(self.lead_hours * HOUR_US)
        # Candidate cut-offs over three days, in time order; take the first k reachable.
        cut = []
        for d in range(3):
            for w in range(width):
                minute = self.wave_cutoff_min[node, w]
                at = day0 + d * DAY_US + np.nan_to_num(minute).astype(np.int64) * 60 * US
                cut.append(np.where(np.isnan(minute) | (at < reach), _NEVER, at))
        cuts = np.stack(cut, axis=1)
        cuts = np.sort(cuts, axis=1)[:, :k]
        out[:, : cuts.shape[1]] = cuts
        return out

    def slot_of(self, node: np.ndarray, wave_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(day number since epoch, wave index) of a node's wave leaving at `wave_us`."""
        day = np.asarray(wave_us) // DAY_US
        minute = (np.asarray(wave_us) - day * DAY_US) // (60 * US)
        match = self.wave_cutoff_min[np.asarray(node)] == minute[:, None]
        return day, match.argmax(axis=1)


def _damage_refund_share(raw: Path, ships: pd.DataFrame) -> float:
    """Refunds for damage over the value of the goods in damaged parcels."""
    items = pd.read_parquet(
        raw / "order_items.parquet", columns=["shipment_id", "quantity", "unit_price"]
    )
    damaged = ships.shipment_id[ships.damaged.eq(True)]
    value = (items.quantity * items.unit_price)[items.shipment_id.isin(damaged)].sum()
    if not (raw / "returns.parquet").exists() or value <= 0:
        return 0.0
    returns = pd.read_parquet(raw / "returns.parquet", columns=["reason", "refund"])
    return float(returns.refund[returns.reason == "damaged"].sum() / value)


def addresses_at(raw: Path, user_id: pd.Series, at: pd.Series) -> pd.DataFrame:
    """Each shopper's address when they ordered: signed-up address, then their moves."""
    users = pd.read_parquet(
        raw / "users.parquet",
        columns=["user_id", "lat", "lon", "city", "province", "region", "city_tier"],
    )
    frame = pd.DataFrame({"user_id": user_id.to_numpy(), "at": _us(at), "row": np.arange(len(at))})
    out = frame.merge(users, on="user_id", how="left")
    path = raw / "address_changes.parquet"
    if path.exists():
        moves = pd.read_parquet(path).rename(columns={"changed_at": "at"})
        moves["at"] = _us(moves["at"])
        if len(moves):
            cols = ["lat", "lon", "city", "province", "region", "city_tier"]
            later = pd.merge_asof(
                frame.sort_values("at"),
                moves.sort_values("at")[["user_id", "at", *cols]],
                on="at",
                by="user_id",
                allow_exact_matches=False,
            ).set_index("row")
            out = out.set_index("row")
            out["city_tier"] = out.city_tier.astype(np.float64)
            moved = later.lat.notna()
            out.loc[moved[moved].index, cols] = later.loc[moved, cols].to_numpy()
            out = out.reset_index()
    return out.sort_values("row").reset_index(drop=True)


def _us(t: pd.Series) -> np.ndarray:
    return t.astype("datetime64[us, UTC]").astype(np.int64).to_numpy()


def storms(raw: Path) -> pd.DataFrame:
    """(date, region) -> storm, from the weather feed; empty when the shop has none."""
    path = raw / "weather.parquet"
    if not path.exists():
        return pd.DataFrame({"date": [], "region": [], "storm": []})
    w = pd.read_parquet(path)
    w["date"] = pd.to_datetime(w["date"]).dt.date
    return w


class Storms:
    """The weather feed's storm days as sorted integer keys (day * 64 + region), looked up
    without pandas: a single decision reads it too."""

    def __init__(self, weather: pd.DataFrame) -> None:
        regions = sorted(set(weather.region)) if len(weather) else []
        self.regions = {r: i for i, r in enumerate(regions)}
        w = weather[weather.storm.astype(bool)] if len(weather) else weather
        if len(w):
            day = pd.to_datetime(pd.Series(w.date)).to_numpy().astype("datetime64[D]")
            day = day.astype(np.int64)
            self.keys = np.sort(day * 64 + w.region.map(self.regions).to_numpy(np.int64))
        else:
            self.keys = np.zeros(0, dtype=np.int64)

    def at(self, day_us: np.ndarray, region) -> np.ndarray:
        """1.0 where a storm is in `region` on the (UTC) day of `day_us`."""
        if not self.keys.size:
            return np.zeros(np.asarray(day_us).size, dtype=np.float64)
        return self.at_codes(day_us, self.codes(region))

    def codes(self, region) -> np.ndarray:
        """The feed's index of each region name (-1: a region the feed never names)."""
        region = np.asarray(region)
        if region.size <= 64:
            return np.array([self.regions.get(x, -1) for x in region], dtype=np.int64)
        # Many rows name few regions: look each distinct name up once.
        inverse, names = pd.factorize(region.reshape(-1), use_na_sentinel=True)
        table = np.array([self.regions.get(x, -1) for x in names] + [-1], dtype=np.int64)
        return table[inverse]

    def at_codes(self, day_us: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`at` with the regions given by their `codes`."""
        day_us = np.asarray(day_us, dtype=np.int64)
        if not self.keys.size or not day_us.size:
            return np.zeros(day_us.size, dtype=np.float64)
        r = np.asarray(codes, dtype=np.int64)
        asked = (day_us // DAY_US) * 64 + r
        pos = np.minimum(np.searchsorted(self.keys, asked), self.keys.size - 1)
        return ((self.keys[pos] == asked) & (r >= 0)).astype(np.float64)


class NodeFeatures:
    """The build's node features by (node, snapshot), looked up as of any instant: the last
    snapshot at or before it (point in time), with sorted integer keys instead of a join."""

    def __init__(self, nf: pd.DataFrame, net: Network) -> None:
        self.columns = [c for c in nf.columns if c not in ("node_id", "snapshot_at")]
        index = {n: i for i, n in enumerate(net.node_id)}
        node = nf.node_id.map(index)
        keep = node.notna().to_numpy()
        t = nf.snapshot_at.astype("datetime64[us, UTC]").astype(np.int64).to_numpy()[keep]
        n = node.to_numpy()[keep].astype(np.int64)
        key = n * _NODE_STRIDE + t
        order = np.argsort(key, kind="stable")
        self.keys, self.node = key[order], n[order]
        self.values = nf[self.columns].to_numpy(np.float64)[keep][order]

    def at(self, node: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """(rows, features): each node's features as of `t_us`; nan before its first snapshot."""
        node = np.asarray(node, dtype=np.int64)
        q = node * _NODE_STRIDE + np.asarray(t_us, dtype=np.int64)
        pos = np.searchsorted(self.keys, q, side="right") - 1
        ok = (pos >= 0) & (self.node[np.maximum(pos, 0)] == node)
        out = np.full((node.size, len(self.columns)), np.nan)
        out[ok] = self.values[pos[ok]]
        return out


# Node index times this plus microseconds since the epoch: one sortable key (below 2**63 for
# thousands of nodes until the year 2100).
_NODE_STRIDE = 1 << 52


def storms_of(weather) -> Storms:
    return weather if isinstance(weather, Storms) else Storms(weather)


def node_features_of(nf, net: Network) -> NodeFeatures | None:
    if nf is None or isinstance(nf, NodeFeatures):
        return nf
    return NodeFeatures(nf, net)


def pair_frame(
    net: Network,
    orders: pd.DataFrame,
    node: np.ndarray,
    carrier: np.ndarray,
    wave_us: np.ndarray,
    weather,
    node_features,
) -> pd.DataFrame:
    """The models' input rows for parcels: `orders` holds one row per parcel with the order's
    columns (`ORDER_COLUMNS` and `ordered_us`, `dest_city`, `dest_province`, `dest_region_name`);
    `node`, `carrier` and `wave_us` say where it leaves from, with whom, and when. `weather` and
    `node_features` are the feed and the build's node features, as frames or as their lookups
    (`Storms`, `NodeFeatures`: made once, they serve every later call)."""
    return pd.DataFrame(pair_columns(net, orders, node, carrier, wave_us, weather, node_features))


def pair_columns(
    net: Network,
    orders,
    node: np.ndarray,
    carrier: np.ndarray,
    wave_us: np.ndarray,
    weather,
    node_features,
    *,
    order_row: np.ndarray | None = None,
    contents: dict[str, np.ndarray] | None = None,
    zone: np.ndarray | None = None,
    wanted=None,
) -> dict[str, np.ndarray]:
    """`pair_frame`'s columns as a dict of float64 arrays, in its order, with ways to do less:
    with `order_row`, `orders` holds one row per order (a frame or a dict of arrays) and parcel
    i is order `order_row[i]`, so what depends on the order alone is worked out once per order;
    `contents` (per parcel: any of weight_kg, volume_cm3, units, value, fragile) overrides the
    order's for parcels carrying part of it; `zone` gives the parcels' zones when the caller
    has them; `wanted` (column names) leaves the other columns out."""
    node = np.asarray(node)
    need = (lambda c: True) if wanted is None else set(wanted).__contains__
    contents = contents or {}

    def per_order(c: str, dtype=np.float64) -> np.ndarray:
        col = orders[c]
        if isinstance(col, pd.Series):
            return col.to_numpy(dtype=dtype)
        return np.asarray(col, dtype=dtype)

    def per_parcel(values: np.ndarray) -> np.ndarray:
        return values if order_row is None else values[order_row]

    ordered = per_parcel(per_order("ordered_us", None))
    out: dict[str, np.ndarray] = {}
    for c in ORDER_COLUMNS:
        if need(c):
            out[c] = (
                np.asarray(contents[c], dtype=np.float64)
                if c in contents
                else per_parcel(per_order(c))
            )
    if need("distance_km"):
        out["distance_km"] = haversine(
            per_parcel(per_order("dest_lat", None)),
            per_parcel(per_order("dest_lon", None)),
            net.lat[node],
            net.lon[node],
        )
    if need("zone"):
        if zone is None:
            zone = net.zone(
                node,
                per_parcel(per_order("dest_city", None)),
                per_parcel(per_order("dest_province", None)),
            )
        out["zone"] = np.asarray(zone).astype(np.float64)
    if need("node_kind"):
        out["node_kind"] = net.kind[node].astype(np.float64)
    if need("carrier"):
        out["carrier"] = np.asarray(carrier, dtype=np.float64)
    if need("node_lat"):
        out["node_lat"] = net.lat[node]
    if need("node_lon"):
        out["node_lon"] = net.lon[node]
    if need("node_region"):
        codes = np.array([net.regions.index(r) for r in net.region], dtype=np.float64)
        out["node_region"] = codes[node]
    if need("wait_hours"):
        out["wait_hours"] = (np.asarray(wave_us) - ordered) / HOUR_US
    lookup = storms_of(weather)
    if need("storm_origin"):
        out["storm_origin"] = lookup.at_codes(ordered, lookup.codes(net.region)[node])
    if need("storm_dest"):
        if order_row is None:
            out["storm_dest"] = lookup.at(ordered, per_order("dest_region_name", None))
        else:
            out["storm_dest"] = lookup.at(
                per_order("ordered_us", None), per_order("dest_region_name", None)
            )[order_row]
    nf = node_features_of(node_features, net)
    if nf is not None and (wanted is None or any(need(c) for c in nf.columns)):
        values = nf.at(node, ordered)
        for k, c in enumerate(nf.columns):
            if need(c):
                out[c] = values[:, k]
    return out


def order_lines(raw: Path, order_ids: np.ndarray | None = None) -> pd.DataFrame:
    """Order lines with their product's weight, volume, fragility and price."""
    filters = [("order_id", "in", list(map(int, order_ids)))] if order_ids is not None else None
    items = pd.read_parquet(
        raw / "order_items.parquet",
        columns=["order_id", "line", "sku", "quantity", "unit_price", "shipment_id", "cancelled"],
        filters=filters,
    )
    products = pd.read_parquet(
        raw / "products.parquet", columns=["sku", "weight_kg", "volume_cm3", "fragile"]
    )
    return items.merge(products, on="sku", how="left")


def order_context(raw: Path, orders: pd.DataFrame) -> pd.DataFrame:
    """Per order: where it goes (the address when ordered) and when, in the models' columns."""
    addr = addresses_at(raw, orders.user_id, orders.ordered_at)
    t = orders.ordered_at
    return pd.DataFrame(
        {
            "order_id": orders.order_id.to_numpy(),
            "user_id": orders.user_id.to_numpy(),
            "ordered_us": t.astype("datetime64[us, UTC]").astype(np.int64).to_numpy(),
            "dest_lat": addr.lat.to_numpy(),
            "dest_lon": addr.lon.to_numpy(),
            "dest_tier": addr.city_tier.to_numpy(dtype=np.float64),
            "dest_city": addr.city.to_numpy(),
            "dest_province": addr.province.to_numpy(),
            "dest_region_name": addr.region.to_numpy(),
            "order_hour": (t.dt.hour + t.dt.minute / 60).to_numpy(),
            "weekday": t.dt.weekday.to_numpy(dtype=np.float64),
        }
    )


def with_region_code(frame: pd.DataFrame, net: Network) -> pd.DataFrame:
    codes = {r: i for i, r in enumerate(net.regions)}
    frame["dest_region"] = frame.dest_region_name.map(codes).fillna(-1).to_numpy(np.float64)
    return frame


def parcel_contents(lines: pd.DataFrame, key: str) -> pd.DataFrame:
    """Weight, volume, fragility, units and value per `key` (a parcel or an order)."""
    q = lines.quantity.to_numpy(np.float64)
    g = lines.assign(
        w=lines.weight_kg * q, v=lines.volume_cm3 * q, val=lines.unit_price * q, f=lines.fragile
    ).groupby(key)
    return pd.DataFrame(
        {
            "weight_kg": g.w.sum(),
            "volume_cm3": g.v.sum(),
            "fragile": g.f.any().astype(np.float64),
            "units": g.quantity.sum().astype(np.float64),
            "value": g.val.sum(),
        }
    )


def history(
    raw: Path, net: Network, weather: pd.DataFrame, node_features: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shop's delivered parcels as model rows, and beside them the targets and keys:
    cost, days from the wave's cut-off to delivery, damaged, the order's time, node and city."""
    ships = pd.read_parquet(raw / "shipments.parquet")
    ships = ships[ships.delivered_at.notna() & ships.wave_at.notna()]
    orders = pd.read_parquet(raw / "orders.parquet", columns=["order_id", "user_id", "ordered_at"])
    orders = orders[orders.order_id.isin(ships.order_id)]
    ctx = with_region_code(order_context(raw, orders), net).set_index("order_id")
    lines = order_lines(raw)
    lines = lines[lines.shipment_id.notna()]
    contents = parcel_contents(lines, "shipment_id")
    ships = ships.drop(columns=["actual_weight_kg", "volume_cm3", "billed_weight_kg"])
    parcels = ships.join(contents, on="shipment_id")
    parcels = parcels.join(ctx, on="order_id")
    node = parcels.node_id.map({n: i for i, n in enumerate(net.node_id)}).to_numpy()
    carrier = parcels.carrier.map({c: i for i, c in enumerate(CARRIERS)}).to_numpy()
    wave_us = parcels.wave_at.astype("datetime64[us, UTC]").astype(np.int64).to_numpy()
    frame = pair_frame(
        net,
        parcels,
        node,
        carrier,
        wave_us,
        weather,
        node_features,
    )
    delivered = parcels.delivered_at.astype("datetime64[us, UTC]").astype(np.int64).to_numpy()
    targets = pd.DataFrame(
        {
            "cost": parcels.cost.to_numpy(np.float64),
            "days_after_cutoff": (delivered - wave_us) / DAY_US,
            "damaged": parcels.damaged.astype(bool).to_numpy(),
            "ordered_us": parcels.ordered_us.to_numpy(),
            "node": node,
            "dest_city": parcels.dest_city.to_numpy(),
        }
    )
    return frame, targets
