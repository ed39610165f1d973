"""The world's true logistics: zones, tariff, transit times, damage, and legacy routing.

`shipping_cost`, `delivery_days` and `damage_prob` are the truth that later stages use to replay
routing decisions counterfactually; `route_legacy` is how the shop routed its history.
"""

from __future__ import annotations

import numpy as np

from cadence.world import _params as P
from cadence.world._geo import Geography, Nodes, haversine_km


def zone_of(geo: Geography, node_city: np.ndarray, dest_city: np.ndarray) -> np.ndarray:
    """0 same city, 1 same province, 2 cross-region, 3 remote destination."""
    same_city = node_city == dest_city
    same_prov = geo.city_province[node_city] == geo.city_province[dest_city]
    remote = geo.province_remote[geo.city_province[dest_city]]
    return np.where(same_city, 0, np.where(same_prov, 1, np.where(remote, 3, 2)))


def billed_weight(actual_kg: np.ndarray, volume_cm3: np.ndarray) -> np.ndarray:
    return np.maximum(actual_kg, volume_cm3 / P.VOLUMETRIC_DIVISOR)


def shipping_cost(
    zone: np.ndarray, carrier: np.ndarray, billed_kg: np.ndarray, node_kind: np.ndarray
) -> np.ndarray:
    """First-weight plus continued-weight tariff by zone and carrier, plus the picking cost."""
    extra_kg = np.ceil(np.maximum(billed_kg - 1.0, 0.0) - 1e-9)
    tariff = (P.TARIFF_FIRST_KG[zone] + P.TARIFF_NEXT_KG[zone] * extra_kg) * P.CARRIER_PRICE[
        carrier
    ]
    return np.round(tariff + P.PICK_COST[node_kind], 2)


def delivery_days(
    zone: np.ndarray,
    carrier: np.ndarray,
    distance_km: np.ndarray,
    storm: np.ndarray,
    noise: np.ndarray,
) -> np.ndarray:
    """Days in transit: zone base and distance, slowed by the carrier and by regional storms."""
    base = (P.ZONE_TRANSIT_DAYS[zone] + distance_km / 900.0) * P.CARRIER_SPEED[carrier]
    return base * noise + 1.0 * storm


def damage_prob(
    zone: np.ndarray, carrier: np.ndarray, fragile: np.ndarray, storm: np.ndarray
) -> np.ndarray:
    return (
        P.BASE_DAMAGE
        * P.CARRIER_DAMAGE[carrier]
        * P.ZONE_DAMAGE[zone]
        * np.where(fragile, 3.0, 1.0)
        * np.where(storm, 2.0, 1.0)
    )


def legacy_carrier(u: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """The shop's carrier for each parcel, from one uniform per parcel."""
    near = zone <= 1
    far = np.where(u < 0.6, 1, np.where(u < 0.85, 2, 0))
    return np.where(near & (u < 0.7), 3, np.where(near, 1, far))


def route_legacy(
    draws: tuple[np.ndarray, np.ndarray, np.ndarray],
    geo: Geography,
    nodes: Nodes,
    stock: np.ndarray,
    order_city: np.ndarray,
    order_lat: np.ndarray,
    order_lon: np.ndarray,
    item_order: np.ndarray,
    item_sku: np.ndarray,
    item_qty: np.ndarray,
) -> np.ndarray:
    """The shop's historical rule: nearest node holding the whole order, with some randomness.

    Items must be sorted by order; `draws` are three uniforms per order. Returns the node per
    item (-1: no node had stock, so the line is cancelled). Never assigns more units than a node
    holds.
    """
    u_store, u_pick, u_alt = draws
    n_orders = order_city.size
    dist = haversine_km(order_lat[:, None], order_lon[:, None], nodes.lat, nodes.lon)
    store = nodes.kind == 2
    # Stores serve only their own city, and the legacy rule tried them only now and then.
    try_store = u_store < 0.3
    allowed = ~store | ((nodes.city == order_city[:, None]) & try_store[:, None])
    avail = (stock[:, item_sku].T >= item_qty[:, None]) & allowed[item_order]
    starts = np.flatnonzero(np.r_[True, item_order[1:] != item_order[:-1]])
    whole = np.zeros((n_orders, nodes.kind.size), dtype=bool)
    whole[item_order[starts]] = np.logical_and.reduceat(avail, starts, axis=0)
    d = np.where(whole, dist, np.inf)
    top = np.argpartition(d, 2, axis=1)[:, :3]
    top = np.take_along_axis(top, np.argsort(np.take_along_axis(d, top, 1), 1, kind="stable"), 1)
    pick = np.where(u_pick < 0.8, 0, np.minimum((u_alt * 3).astype(np.int64), 2))
    rows = np.arange(n_orders)
    chosen = top[rows, pick]
    chosen = np.where(np.isfinite(d[rows, chosen]), chosen, top[:, 0])
    served = np.isfinite(d[rows, chosen])
    item_node = np.where(served[item_order], chosen[item_order], -1)

    # Lines that lose a race for the last units, and orders no single node could serve, are
    # split: each line goes to its nearest node with units still unallocated.
    placed = np.flatnonzero(item_node >= 0)
    lost = _losers(stock, item_node[placed], item_sku[placed], item_qty[placed])
    item_node[placed[lost]] = -1
    placed = placed[~lost]
    left = stock.copy()
    np.subtract.at(left, (item_node[placed], item_sku[placed]), item_qty[placed])
    todo = np.flatnonzero(item_node < 0)
    while todo.size:
        can = (left[:, item_sku[todo]].T >= item_qty[todo, None]) & allowed[item_order[todo]]
        dd = np.where(can, dist[item_order[todo]], np.inf)
        best = np.argmin(dd, axis=1)
        todo = todo[np.isfinite(dd[np.arange(todo.size), best])]  # the rest stay unserved
        best = best[np.isfinite(dd[np.arange(dd.shape[0]), best])]
        lost = _losers(left, best, item_sku[todo], item_qty[todo])
        won = todo[~lost]
        item_node[won] = best[~lost]
        np.subtract.at(left, (item_node[won], item_sku[won]), item_qty[won])
        todo = todo[lost]
    return item_node


def _losers(stock, node, sku, qty) -> np.ndarray:
    """Lines whose cumulative quantity at their node exceeds its stock (later lines lose)."""
    if not node.size:
        return np.zeros(0, dtype=bool)
    key = node.astype(np.int64) * stock.shape[1] + sku
    order = np.argsort(key, kind="stable")
    k = key[order]
    cum = np.cumsum(qty[order])
    first = np.r_[True, k[1:] != k[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(k.size), 0))
    within = cum - np.r_[0, cum][start]
    lost = np.zeros(node.size, dtype=bool)
    lost[order] = within > stock[node[order], sku[order]]
    return lost
