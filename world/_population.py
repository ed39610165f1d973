"""The catalogue and the shoppers, with the latent traits that drive their behaviour.

Sensitive attributes (gender, age band) are drawn from where people live, and behaviour depends
on life stage and on place, so the paths from a sensitive attribute to behaviour are plausible
ones: age band to having an infant, region to delivery quality, city tier to price sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadence.world import _params as P
from cadence.world._geo import Geography

# Age bands by city tier (rows tier 1..5); bigger cities are younger.
_AGE_BY_TIER = np.array(
    [
        [0.24, 0.36, 0.21, 0.12, 0.07],
        [0.20, 0.33, 0.22, 0.15, 0.10],
        [0.17, 0.29, 0.23, 0.18, 0.13],
        [0.14, 0.26, 0.23, 0.21, 0.16],
        [0.12, 0.23, 0.23, 0.23, 0.19],
    ]
)
# Chance of a household with an infant, by age band.
_PARENT_BY_AGE = np.array([0.05, 0.24, 0.13, 0.02, 0.01])
# Share of women by region: the western regions' cities draw male migrant workers.
_FEMALE_BY_REGION = np.array([0.51, 0.51, 0.52, 0.51, 0.52, 0.46, 0.44])
_IOS_BY_TIER = np.array([0.45, 0.35, 0.25, 0.18, 0.14])
_MINI_BY_TIER = np.array([0.08, 0.12, 0.18, 0.24, 0.30])
# Coupon responsiveness rises as city tier falls (more price-sensitive shoppers).
_COUPON_BY_TIER = np.array([0.6, 0.8, 1.0, 1.3, 1.6])
HISTORY_DAYS = 3 * 365


@dataclass(frozen=True)
class Catalogue:
    category: np.ndarray  # category index per SKU
    price: np.ndarray
    weight: np.ndarray
    volume: np.ndarray
    fragile: np.ndarray
    popularity: np.ndarray  # within-category choice probability
    first_sku: np.ndarray  # first SKU index of each category


@dataclass(frozen=True)
class Population:
    """One entry per shopper; cycle arrays are (users, cycle categories)."""

    city: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    household: np.ndarray  # the index of the shopper whose household this is (self for most)
    signup_s: np.ndarray  # seconds from the world's start (negative before it)
    active_day: np.ndarray  # first day the shopper can act
    age_band: np.ndarray
    gender: np.ndarray  # 0 female, 1 male, 2 undisclosed
    device: np.ndarray
    membership: np.ndarray
    engagement: np.ndarray
    coupon_response: np.ndarray
    churn_base: np.ndarray  # daily lapse hazard while active
    lapse_after_order: np.ndarray  # chance of lapsing after each order
    winback: np.ndarray  # daily chance of coming back while lapsed
    loyalty: np.ndarray  # share of due replenishments bought here while active
    peak_hour: np.ndarray
    needs: np.ndarray  # bool (users, cycle categories)
    cycle_mean: np.ndarray  # (users, cycle categories)
    favourite: np.ndarray  # favourite SKU per cycle category
    taste: np.ndarray  # (users, categories) impulse category probabilities (cumulative)


def make_catalogue(rng: np.random.Generator) -> Catalogue:
    n = P.N_CAT * P.SKUS_PER_CATEGORY
    cat = np.repeat(np.arange(P.N_CAT), P.SKUS_PER_CATEGORY)
    price = np.round(P.PRICE[cat] * rng.lognormal(0, 0.35, n), 2)
    weight = np.round(P.WEIGHT[cat] * rng.lognormal(0, 0.3, n), 3)
    volume = np.round(P.VOLUME[cat] * rng.lognormal(0, 0.3, n), 0)
    fragile = rng.random(n) < P.FRAGILE_SHARE[cat]
    rank = np.tile(np.arange(1, P.SKUS_PER_CATEGORY + 1), P.N_CAT)
    pop = 1.0 / rank**1.1
    pop /= np.repeat(
        np.add.reduceat(pop, np.arange(0, n, P.SKUS_PER_CATEGORY)), P.SKUS_PER_CATEGORY
    )
    return Catalogue(
        category=cat,
        price=price,
        weight=weight,
        volume=volume,
        fragile=fragile,
        popularity=pop,
        first_sku=np.arange(0, n, P.SKUS_PER_CATEGORY),
    )


def pick_sku(u: np.ndarray, cat: Catalogue, category: np.ndarray) -> np.ndarray:
    """A SKU of each given category, by popularity, from one uniform each."""
    cum = np.cumsum(cat.popularity[: P.SKUS_PER_CATEGORY])  # same shape in every category
    within = np.searchsorted(cum / cum[-1], u, side="right")
    return cat.first_sku[category] + np.minimum(within, P.SKUS_PER_CATEGORY - 1)


def _households(rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
    """Per shopper, the shopper whose household (and address) they share: with chance
    `HOUSEHOLD_JOIN`, a random shopper of the same city who lives on their own; else themself."""
    n = city.size
    joins = rng.random(n) < P.HOUSEHOLD_JOIN
    pick = rng.random(n)
    heads = np.flatnonzero(~joins)
    heads = heads[np.argsort(city[heads], kind="stable")]
    start = np.searchsorted(city[heads], np.arange(city.max() + 2))
    count = start[city + 1] - start[city]
    household = np.arange(n)
    joining = np.flatnonzero(joins & (count > 0))
    offset = (pick[joining] * count[joining]).astype(np.int64)
    household[joining] = heads[start[city[joining]] + offset]
    return household


def make_population(
    rng: np.random.Generator, geo: Geography, cat: Catalogue, n: int, days: int
) -> Population:
    city = rng.choice(geo.city_weight.size, size=n, p=geo.city_weight)
    tier = geo.city_tier[city]
    region = geo.city_region[city]
    lat = geo.city_lat[city] + rng.normal(0, 0.06, n)
    lon = geo.city_lon[city] + rng.normal(0, 0.06, n)
    household = _households(rng, city)
    lat, lon = lat[household], lon[household]

    # Three in four shoppers joined in the three years before the start, the rest during it.
    existing = rng.random(n) < 0.75
    signup_s = np.where(
        existing,
        -rng.uniform(1, HISTORY_DAYS, n) * 86400,
        rng.uniform(0, days - 1, n) * 86400,
    ).astype(np.int64)
    active_day = np.where(existing, 0, signup_s // 86400 + 1)

    u = rng.random(n)
    age_band = (u[:, None] > np.cumsum(_AGE_BY_TIER[tier - 1], axis=1)).sum(axis=1)
    g = rng.random(n)
    gender = np.where(g < 0.03, 2, np.where(g < 0.03 + 0.97 * _FEMALE_BY_REGION[region], 0, 1))
    d = rng.random(n)
    ios, mini = _IOS_BY_TIER[tier - 1], _MINI_BY_TIER[tier - 1]
    device = np.where(d < ios, 0, np.where(d < ios + mini, 3, np.where(d < 0.85, 1, 2)))

    tier_eng = np.array([1.15, 1.05, 1.0, 0.92, 0.85])[tier - 1]
    engagement = rng.lognormal(-0.32, 0.8, n) * tier_eng
    noisy = engagement * rng.lognormal(0, 0.3, n)
    membership = np.digitize(noisy, np.quantile(noisy, [0.65, 0.9]))
    coupon_response = rng.lognormal(np.log(0.6), 0.6, n) * _COUPON_BY_TIER[tier - 1]
    churn_base = rng.lognormal(np.log(P.CHURN_MEDIAN), P.CHURN_SPREAD, n)
    lapse_after_order = rng.beta(P.LAPSE_AFTER_ORDER_A, P.LAPSE_AFTER_ORDER_B, n)
    winback = rng.lognormal(np.log(P.WINBACK_MEDIAN), P.WINBACK_SPREAD, n)
    loyalty = rng.beta(P.LOYALTY_A, P.LOYALTY_B, n)
    peak_hour = rng.choice([8, 12, 20, 22], size=n, p=[0.15, 0.25, 0.4, 0.2])

    parent = rng.random(n) < _PARENT_BY_AGE[age_band]
    big_city = tier <= 2
    needs = np.column_stack(
        [
            parent & (rng.random(n) < 0.85),
            parent & (rng.random(n) < 0.95),
            rng.random(n) < np.where(big_city, 0.18, 0.12),
            rng.random(n) < np.where(big_city & (age_band >= 1) & (age_band <= 2), 0.25, 0.12),
            rng.random(n) < 0.18,
            rng.random(n) < 0.25,
        ]
    )
    # Log-normal around the category's mean, with the mean kept (mu = -sigma^2 / 2).
    s = P.CYCLE_USER_JITTER
    cycle_mean = P.CYCLE_MEAN * rng.lognormal(-s * s / 2, s, needs.shape)
    favourite = pick_sku(
        rng.random(needs.size), cat, np.broadcast_to(P.CYCLE_IDX, needs.shape).ravel()
    ).reshape(needs.shape)

    # Impulse tastes: a Dirichlet draw over the categories bought on impulse; parents lean
    # to toys and snacks (co-purchase with formula and diapers).
    alpha = np.ones(P.N_CAT)
    alpha[P.CYCLE_IDX] = 0.15
    taste = rng.gamma(np.broadcast_to(alpha, (n, P.N_CAT)))
    taste[parent, P.CAT_INDEX["toys"]] += 1.5
    taste[parent, P.CAT_INDEX["snacks"]] += 0.5
    # What a shopper replenishes on a cycle is bought on that cycle, not on impulse.
    taste[:, P.CYCLE_IDX] *= ~needs
    taste = np.cumsum(taste, axis=1)
    taste /= taste[:, -1:]
    return Population(
        city=city,
        lat=lat,
        lon=lon,
        household=household,
        signup_s=signup_s,
        active_day=active_day,
        age_band=age_band,
        gender=gender,
        device=device,
        membership=membership,
        engagement=engagement,
        coupon_response=coupon_response,
        churn_base=churn_base,
        lapse_after_order=lapse_after_order,
        winback=winback,
        loyalty=loyalty,
        peak_hour=peak_hour,
        needs=needs,
        cycle_mean=cycle_mean,
        favourite=favourite,
        taste=taste,
    )
