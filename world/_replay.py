"""Running the world forward from a saved state, with a policy that sends offers.

`World(cfg, policy=...)` runs like `simulate`, but can stop on any day (`run(until=...)`), be
saved (`save()`, bytes) and go on later from that state (`World.load(...)`), with the same or
another policy. Each day the policy gets a `ShopView`: the raw tables as the shop knows them at
the start of that day (never the truth), and returns offers (`world.respond` decides the
answers). A policy that sends nothing leaves every table exactly as a run without one.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cadence.ingest import _tables as T
from cadence.world._simulate import DAY_S, US, WorldConfig, _Shop

Policy = Callable[["ShopView"], Any]


class ShopView:
    """What the shop can see at the start of `day`: its raw tables up to then."""

    def __init__(self, shop: _Shop, day: int) -> None:
        self._shop = shop
        self.day = day
        self.date: dt.date = shop.cfg.start + dt.timedelta(days=day)
        self.now_us = shop.cfg.start_us + day * DAY_S * US

    def table(self, name: str) -> pa.Table:
        """A raw table as known now; ValueError for a name that is not a raw table."""
        if name not in T.SCHEMAS:
            raise ValueError(f"no raw table {name!r}; raw tables: {', '.join(T.SCHEMAS)}")
        shop = self._shop
        if name == "offers":
            return shop.offers.table(
                shop.ids, np.datetime64(shop.cfg.start, "D"), now_us=self.now_us
            )
        if name == "consents":
            t = shop.consent.table(shop.ids)
            return t.filter(pc.less(t["changed_at"], self._now(t["changed_at"].type)))
        if name == "coupons":
            t = shop.coupons.table(shop.ids)
            t = t.filter(pc.less(t["issued_at"], self._now(t["issued_at"].type)))
            return self._unknown(t, "redeemed_at", ["redeemed_at", "order_id"])
        parts = shop.history.get(name)
        t = pa.concat_tables(parts) if parts else T.SCHEMAS[name].empty_table()
        # What is stamped later has not happened yet: shoppers not signed up, returns and
        # contacts still to come; a parcel's hand-over and delivery (and whether it was late or
        # damaged) are not known before they happen.
        first = {"users": "signup_at", "returns": "requested_at", "service_contacts": "ts"}
        if name in first:
            t = t.filter(pc.less(t[first[name]], self._now(t[first[name]].type)))
        if name == "weather":
            return t.filter(pc.less_equal(t["date"], pa.scalar(self.date, pa.date32())))
        if name == "shipments":
            t = self._unknown(t, "shipped_at", ["shipped_at"])
            t = self._unknown(t, "delivered_at", ["delivered_at", "late", "damaged"])
        return t

    def _unknown(self, t: pa.Table, when: str, columns: list[str]) -> pa.Table:
        """`columns` made null where `when` is now or later."""
        later = pc.fill_null(pc.greater_equal(t[when], self._now(t[when].type)), False)
        for column in columns:
            i = t.column_names.index(column)
            t = t.set_column(
                i, column, pc.if_else(later, pa.scalar(None, t[column].type), t[column])
            )
        return t

    def _now(self, typ: pa.DataType) -> pa.Scalar:
        return pa.scalar(self.now_us, pa.int64()).cast(typ)


class World:
    """A world that runs in steps and can be saved between them."""

    def __init__(self, cfg: WorldConfig, *, policy: Policy | None = None) -> None:
        self._shop = _Shop(cfg)
        self.policy = policy
        self.day = 0

    @property
    def cfg(self) -> WorldConfig:
        return self._shop.cfg

    def run(
        self, until: int | None = None, on_day: Callable[[int], None] | None = None
    ) -> Iterator[tuple[str, pa.Table]]:
        """Runs from the current day to `until` (default: the end), yielding what it makes."""
        until = self.cfg.days if until is None else until
        if not self.day <= until <= self.cfg.days:
            raise ValueError(f"until must lie in [{self.day}, {self.cfg.days}], got {until}")
        first, self.day = self.day, until
        yield from self._shop.run(first, until, on_day, self.policy, keep=True)

    def save(self) -> bytes:
        """The whole state between two days: a later `load` goes on exactly from here."""
        return pickle.dumps((self._shop, self.day), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, state: bytes, *, policy: Policy | None = None) -> World:
        world = cls.__new__(cls)
        world._shop, world.day = pickle.loads(state)
        world.policy = policy
        return world
