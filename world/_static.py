"""The tables that do not change day by day: users, products, nodes, and the users' latent truth."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from cadence.world import _params as P
from cadence.world._emit import Lookup, labels, to_table


def static_tables(cfg, geo, cat, pop, nodes, ids) -> Iterator[tuple[str, pa.Table]]:
    from cadence.world._emit import Batches

    place = Batches(ids, geo, 0, 0, cfg.start)
    lookups = place.lookups
    yield (
        "users",
        to_table(
            "users",
            {
                "user_id": Lookup("user", np.arange(pop.city.size)),
                "household_id": labels("h", pop.household),
                "address_id": labels("a", pop.household),
                "signup_at": cfg.start_us + pop.signup_s * 1_000_000,
                "lat": np.round(pop.lat, 6),
                "lon": np.round(pop.lon, 6),
                **place.city_columns(pop.city),
                "membership": Lookup("membership", pop.membership),
                "device": Lookup("device", pop.device),
                "gender": Lookup("gender", pop.gender),
                "age_band": Lookup("age_band", pop.age_band),
            },
            lookups,
        ),
    )

    # The true replenishment cycles stay in truth (truth/cycles.parquet, per shopper): a
    # shop's catalogue does not know them, and a model reading them would learn the answer.
    c = cat.category
    yield (
        "products",
        to_table(
            "products",
            {
                "sku": Lookup("sku", np.arange(c.size)),
                "category": Lookup("category", c),
                "price": cat.price,
                "weight_kg": cat.weight,
                "volume_cm3": cat.volume,
                "fragile": cat.fragile,
            },
            lookups,
        ),
    )

    yield (
        "nodes",
        to_table(
            "nodes",
            {
                "node_id": Lookup("node", np.arange(nodes.kind.size)),
                "kind": Lookup("node_kind", nodes.kind),
                "lat": np.round(nodes.lat, 6),
                "lon": np.round(nodes.lon, 6),
                **place.city_columns(nodes.city),
                "daily_capacity": nodes.capacity,
            },
            lookups,
        ),
    )


def truth_latent(pop, alive_at_end: np.ndarray, ids) -> pa.Table:
    """Each shopper's hidden traits: for evaluation only, never a model input. `alive_at_end`
    says whether the shopper was active (not lapsed) at the data's end."""
    cols = {
        "user_id": ids.user,
        "engagement": pa.array(pop.engagement),
        "coupon_response": pa.array(pop.coupon_response),
        "churn_hazard_base": pa.array(pop.churn_base),
        "lapse_after_order": pa.array(pop.lapse_after_order),
        "winback_hazard": pa.array(pop.winback),
        "loyalty": pa.array(pop.loyalty),
        "alive_at_end": pa.array(alive_at_end),
        "peak_hour": pa.array(pop.peak_hour.astype(np.int8)),
    }
    for j, name in enumerate(P.CYCLE_CATS):
        cols[f"needs_{name}"] = pa.array(pop.needs[:, j])
    return pa.table(cols)
