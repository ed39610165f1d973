"""Geography of the simulated country: regions, provinces, cities with tiers, fulfilment nodes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = ("north", "northeast", "east", "south", "central", "southwest", "northwest")
# Region centres on a fictional map (lat, lon); the far west is sparse and remote.
_CENTRES = np.array(
    [
        [39.5, 116.0],
        [44.5, 125.5],
        [31.0, 120.5],
        [23.5, 113.5],
        [30.5, 113.0],
        [28.0, 104.0],
        [37.5, 97.0],
    ]
)
_REGION_WEIGHT = np.array([1.2, 0.7, 1.6, 1.4, 1.1, 0.9, 0.4])
PROVINCES_PER_REGION = 3
CITIES_PER_PROVINCE = 3
_TIER_WEIGHT = np.array([10.0, 4.0, 2.0, 1.2, 0.8])


@dataclass(frozen=True)
class Geography:
    """Cities (arrays indexed by city) and their provinces and regions."""

    city_name: np.ndarray
    city_lat: np.ndarray
    city_lon: np.ndarray
    city_tier: np.ndarray  # 1..5
    city_province: np.ndarray  # province index
    city_region: np.ndarray  # region index
    city_weight: np.ndarray  # share of the population
    province_name: np.ndarray
    province_remote: np.ndarray  # bool per province


@dataclass(frozen=True)
class Nodes:
    """Fulfilment nodes: kind 0 regional warehouse, 1 forward warehouse, 2 store."""

    node_id: np.ndarray
    kind: np.ndarray
    city: np.ndarray  # city index
    lat: np.ndarray
    lon: np.ndarray
    capacity: np.ndarray  # shipments per day


def make_geography(rng: np.random.Generator) -> Geography:
    n_prov = len(REGIONS) * PROVINCES_PER_REGION
    prov_region = np.repeat(np.arange(len(REGIONS)), PROVINCES_PER_REGION)
    prov_centre = _CENTRES[prov_region] + rng.normal(0, 2.0, size=(n_prov, 2))
    # The outer provinces of the two western regions are remote.
    remote = np.isin(prov_region, [5, 6]) & (np.arange(n_prov) % PROVINCES_PER_REGION != 0)

    city_prov = np.repeat(np.arange(n_prov), CITIES_PER_PROVINCE)
    n_city = city_prov.size
    centre = prov_centre[city_prov] + rng.normal(0, 0.9, size=(n_city, 2))
    capital = np.arange(n_city) % CITIES_PER_PROVINCE == 0
    region = prov_region[city_prov]
    tier = np.where(capital, 2, 0)
    # The capitals of the four largest regions are the tier-1 cities.
    tier[capital & np.isin(region, [0, 2, 3, 4]) & (city_prov % PROVINCES_PER_REGION == 0)] = 1
    others = np.flatnonzero(~capital)
    tier[others] = rng.choice([3, 4, 5], size=others.size, p=[0.3, 0.35, 0.35])
    tier[others[remote[city_prov[others]]]] = np.maximum(tier[others[remote[city_prov[others]]]], 4)
    weight = _TIER_WEIGHT[tier - 1] * _REGION_WEIGHT[region] * rng.uniform(0.7, 1.3, n_city)
    weight /= weight.sum()
    return Geography(
        city_name=np.array([f"city-{i:02d}" for i in range(n_city)]),
        city_lat=centre[:, 0],
        city_lon=centre[:, 1],
        city_tier=tier,
        city_province=city_prov,
        city_region=region,
        city_weight=weight,
        province_name=np.array([f"prov-{i:02d}" for i in range(n_prov)]),
        province_remote=remote,
    )


def make_nodes(geo: Geography, rng: np.random.Generator, expected_daily_orders: float) -> Nodes:
    """12 regional warehouses, 3 forward warehouses and 30 stores, sized to the demand."""
    by_size = np.argsort(-geo.city_weight, kind="stable")
    capitals = [
        int(np.flatnonzero((geo.city_region == r) & (geo.city_tier <= 2))[0])
        for r in range(len(REGIONS))
    ]
    rdc = capitals + [int(c) for c in by_size if c not in capitals][: 12 - len(capitals)]
    fdc = [int(c) for c in by_size if geo.city_tier[c] == 1][:3]
    big = np.flatnonzero(geo.city_tier <= 3)
    p = geo.city_weight[big] / geo.city_weight[big].sum()
    stores = np.sort(rng.choice(big, size=30, replace=True, p=p))
    city = np.array(rdc + fdc + list(stores))
    kind = np.array([0] * len(rdc) + [1] * len(fdc) + [2] * len(stores))
    lat = geo.city_lat[city] + rng.normal(0, 0.05, city.size)
    lon = geo.city_lon[city] + rng.normal(0, 0.05, city.size)
    # Capacity: each warehouse is sized for its share of the demand with some headroom, so
    # ordinary days run near 60% and festival peaks overload it.
    nearest = nearest_node(geo.city_lat, geo.city_lon, lat[kind == 0], lon[kind == 0])
    share = np.bincount(nearest, weights=geo.city_weight, minlength=len(rdc))
    cap = np.empty(city.size)
    cap[kind == 0] = 2.8 * expected_daily_orders * share
    cap[kind == 1] = 0.15 * expected_daily_orders
    cap[kind == 2] = 0.02 * expected_daily_orders
    names = {0: "RDC", 1: "FDC", 2: "STO"}
    counters = {0: 0, 1: 0, 2: 0}
    ids = []
    for k in kind:
        counters[int(k)] += 1
        ids.append(f"{names[int(k)]}-{counters[int(k)]:02d}")
    return Nodes(
        node_id=np.array(ids),
        kind=kind,
        city=city,
        lat=lat,
        lon=lon,
        capacity=np.maximum(np.ceil(cap), 5).astype(np.int32),
    )


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance; broadcasts like NumPy."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def nearest_node(lat, lon, node_lat, node_lon) -> np.ndarray:
    d = haversine_km(np.asarray(lat)[:, None], np.asarray(lon)[:, None], node_lat, node_lon)
    return np.argmin(d, axis=1)
