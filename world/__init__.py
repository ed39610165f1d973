"""The simulated shop: the embedded default data source, and the judge of later stages.

`simulate(WorldConfig(...))` runs a shop day by day and yields Arrow batches of the raw tables
(see `ingest._tables`, the storms among them as the `weather` feed) and of the ground truth
(`truth_*`: latent traits, replenishment cycles, and the oracle's true repurchase probabilities
on a snapshot grid). Nothing here writes files. The true logistics functions (`shipping_cost`,
`delivery_days`, `damage_prob`) replay routing decisions counterfactually; no model may read
the truth at training time.
`Fulfilment` is the same truth for any node, carrier and wave a router might choose.
`realism_table` measures a generated world against the ranges real shops' order logs fall in.
`World` runs the same shop in steps, saved and resumed, with a policy that sends offers; `respond`
is the shoppers' true answer to one.
"""

from cadence.world._logistics import (
    billed_weight,
    damage_prob,
    delivery_days,
    shipping_cost,
    zone_of,
)
from cadence.world._offers import OfferError, ResponseParams, respond
from cadence.world._realism import realism_table
from cadence.world._replay import ShopView, World
from cadence.world._routing import Fulfilment, Outcome, Parcels
from cadence.world._simulate import WorldConfig, simulate
from cadence.world._summary import summarise

__all__ = [
    "Fulfilment",
    "OfferError",
    "Outcome",
    "Parcels",
    "ResponseParams",
    "ShopView",
    "World",
    "WorldConfig",
    "billed_weight",
    "damage_prob",
    "delivery_days",
    "realism_table",
    "respond",
    "shipping_cost",
    "simulate",
    "summarise",
    "zone_of",
]
