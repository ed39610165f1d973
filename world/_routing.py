"""The world's truth for fulfilment choices: what sending a parcel from any node, by any carrier,
in any dispatch wave would have cost and how long it would have taken.

Routing strategies are replayed against this, counterfactually: the same held-out orders, each
strategy's own choices, the world's own tariff, transit and damage functions
(`_logistics`), its storms and its dispatch schedule. The random parts (hand-over delay, transit
noise, damage) are drawn per order and parcel from keyed streams, never per node, so every
strategy meets the same luck and their differences are the choices' alone.

The shop's delivery promise is the shop's own (set at checkout, before any routing, from the
best zone a warehouse reaches for the destination: `models._route_inputs.Network.promise_us`);
a parcel is next-day when it arrives before the end of the day after the order's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cadence.world import _params as P
from cadence.world import _random as X
from cadence.world._geo import REGIONS, Geography, haversine_km, make_geography
from cadence.world._logistics import (
    billed_weight,
    damage_prob,
    delivery_days,
    shipping_cost,
    zone_of,
)

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
KINDS = ("regional_warehouse", "forward_warehouse", "store")


@dataclass(frozen=True)
class Parcels:
    """Parcels to judge, one entry each: who ordered what, from where, by which carrier, and
    the dispatch wave it leaves with (the wave's cut-off instant)."""

    order_id: np.ndarray  # int64, keys the draws
    part: np.ndarray  # the parcel's place among its order's parcels (0, 1, ...)
    node: np.ndarray  # node index (row of the nodes table)
    carrier: np.ndarray  # index into CARRIERS
    dest_lat: np.ndarray
    dest_lon: np.ndarray
    dest_city: np.ndarray  # city index
    weight_kg: np.ndarray
    volume_cm3: np.ndarray
    fragile: np.ndarray  # bool: any fragile item inside
    value: np.ndarray  # the goods' price
    ordered_us: np.ndarray
    wave_us: np.ndarray  # the cut-off of the wave it leaves with


@dataclass(frozen=True)
class Outcome:
    """What happened to each parcel: its cost (tariff and picking, plus the refund damage is
    expected to bring back), its zone and distance, when it arrived and whether it came
    damaged."""

    cost: np.ndarray
    shipping: np.ndarray
    damage_loss: np.ndarray
    zone: np.ndarray
    distance_km: np.ndarray
    delivered_us: np.ndarray
    damaged: np.ndarray


class Fulfilment:
    """The true cost and time of fulfilment choices in the world generated with `seed`.

    `nodes` is the raw `nodes` table (its row order is the node index); `weather` the raw
    `weather` table. City indices follow the world's city names (`city-07` is city 7).
    """

    def __init__(self, seed: int, nodes: pa.Table, weather: pa.Table) -> None:
        self.geo: Geography = make_geography(np.random.default_rng(seed))
        self.seed = seed
        self.node_kind = np.array([KINDS.index(k) for k in nodes["kind"].to_pylist()])
        self.node_city = city_index(nodes["city"].to_pylist())
        self.node_lat = nodes["lat"].to_numpy()
        self.node_lon = nodes["lon"].to_numpy()
        dates = weather["date"].to_numpy().astype("datetime64[D]")
        self.first_day = dates.min() if dates.size else np.datetime64("1970-01-01")
        n_days = int((dates.max() - self.first_day).astype(int)) + 1 if dates.size else 0
        self.storm = np.zeros((n_days, len(REGIONS)), dtype=bool)
        region = np.array([REGIONS.index(r) for r in weather["region"].to_pylist()], dtype=int)
        day = (dates - self.first_day).astype(int)
        self.storm[day, region] = weather["storm"].to_numpy(zero_copy_only=False)

    def stormy(self, at_us: np.ndarray, city: np.ndarray) -> np.ndarray:
        """Whether a storm slows parcels in the city's region on the day of `at_us`."""
        first_us = self.first_day.astype("datetime64[us]").astype(np.int64)
        day = (np.asarray(at_us) - first_us) // DAY_US
        inside = (day >= 0) & (day < self.storm.shape[0])
        out = np.zeros(day.shape, dtype=bool)
        out[inside] = self.storm[day[inside], self.geo.city_region[np.asarray(city)[inside]]]
        return out

    def outcome(self, p: Parcels) -> Outcome:
        zone = zone_of(self.geo, self.node_city[p.node], p.dest_city)
        kind = self.node_kind[p.node]
        dist = haversine_km(p.dest_lat, p.dest_lon, self.node_lat[p.node], self.node_lon[p.node])
        shipping = shipping_cost(
            zone, p.carrier, billed_weight(p.weight_kg, p.volume_cm3), kind
        ).astype(float)
        handover = P.HANDOVER_HOURS * X.lognormal(
            self._draw("route.handover", p.order_id, p.part), 0, 0.3
        )
        shipped = p.wave_us + (handover * HOUR_US).astype(np.int64)
        storm = self.stormy(shipped, p.dest_city)
        transit = delivery_days(
            zone,
            p.carrier,
            dist,
            storm,
            X.lognormal(self._draw("route.transit", p.order_id, p.part), 0, 0.2),
        )
        delivered = shipped + (transit * DAY_US).astype(np.int64)
        chance = damage_prob(zone, p.carrier, p.fragile, storm)
        damaged = self._draw("route.damage", p.order_id, p.part) < chance
        # The cost counts the expected refund, not the one drawn: a router can lower the chance
        # of damage but not its luck, and the replay's totals need not carry that noise.
        loss = chance * P.RETURN_IF_DAMAGED * p.value
        return Outcome(
            cost=shipping + loss,
            shipping=shipping,
            damage_loss=loss,
            zone=zone,
            distance_km=dist,
            delivered_us=delivered,
            damaged=damaged,
        )

    def _draw(self, purpose: str, order_id: np.ndarray, part: np.ndarray) -> np.ndarray:
        return X.Streams(self.seed, 0).keyed(purpose, np.asarray(order_id), np.asarray(part))


def city_index(names) -> np.ndarray:
    """The world's city index from its name (`city-07` -> 7)."""
    return np.array([int(str(n).rsplit("-", 1)[1]) for n in names], dtype=np.int64)
