"""The feature catalogue: every family, in the order their columns appear."""

from __future__ import annotations

from cadence.features._activity import CART, CART_STATE, COUPONS, SEARCH, SESSIONS
from cadence.features._catalogue import Family, Feature
from cadence.features._nodes import NODE
from cadence.features._orders import BASKET, BTYD, CATEGORIES, GAPS, ORDERS, TIME_HABITS
from cadence.features._service import CONTACTS, FULFILMENT, MOVES, PROFILE, RETURNS, TRENDS

USER_FAMILIES: tuple[Family, ...] = (
    ORDERS,
    GAPS,
    CATEGORIES,
    BASKET,
    TIME_HABITS,
    SESSIONS,
    CART,
    CART_STATE,
    SEARCH,
    COUPONS,
    RETURNS,
    FULFILMENT,
    CONTACTS,
    MOVES,
    PROFILE,
    TRENDS,
    BTYD,  # fitted on the assembled rows, so its columns come last
)
NODE_FAMILIES: tuple[Family, ...] = (NODE,)


def user_features() -> list[Feature]:
    return [f for fam in USER_FAMILIES for f in fam.features]


def node_features() -> list[Feature]:
    return [f for fam in NODE_FAMILIES for f in fam.features]
