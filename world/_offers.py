"""Offers to order early, and each shopper's true response to one.

A policy (the merge campaign, or a test) hands the world offers: a shopper, an incentive (a
discount rate, or a free upgrade to express) and a suggested date. `respond` is the true chance
that the shopper accepts, from what the world knows and the shop does not: how soon their next
replenishment is due, how much incentives move them, the incentive itself, how many offers they
had lately (fatigue) and whether they have lapsed. An accepted offer becomes an order on the
suggested date (unless the shopper cancels first) that buys the replenishments due within
`pull_days` of it, so their cycles run on from that order: a campaign adds no consumption beyond
the stockpile a discount brings and the add-ons an incentive tempts. An offer to a shopper whose
profiling or contact consent is withdrawn is never delivered (`blocked`).

The answers are drawn from the offers' own streams, keyed by shopper (`_random`): a world run
with a policy that sends nothing is the world run without one, byte for byte, and an offer to one
shopper changes no other shopper's draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from cadence.ingest import _tables as T
from cadence.world._emit import Lookup, Nullable, to_table

DAY_US = 86_400 * 1_000_000
FATIGUE_DAYS = 30.0
SEND_HOUR = 9


class OfferError(ValueError):
    """A policy's offers are malformed; the message names the column and the first bad row."""


@dataclass(frozen=True)
class ResponseParams:
    """The response function's weights on the logit scale (conf/world.yaml, `offers`)."""

    base: float = -2.7
    need: float = 2.0  # at a replenishment due today; falls as exp(-days to due / need_days)
    need_days: float = 7.0
    sensitivity: float = 1.0  # per unit of log coupon responsiveness
    per_discount: float = 8.0  # per unit of discount rate: 10% off adds 0.8
    express: float = 0.5  # a free upgrade to express
    fatigue: float = 0.7  # per offer received in about the last 30 days
    lapsed: float = -1.5
    cancel: float = 0.08  # chance an acceptance is cancelled before its order
    addon_lift: float = 0.5  # an incentive's order holds this much more in add-ons
    pull_days: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.cancel <= 1:
            raise ValueError(f"offers cancel must lie in [0, 1], got {self.cancel}")
        if self.need_days <= 0 or self.pull_days < 0 or self.addon_lift < 0:
            raise ValueError("offers need_days must be positive, pull_days and addon_lift >= 0")


def respond(
    params: ResponseParams,
    *,
    days_to_due: np.ndarray,
    coupon_response: np.ndarray,
    discount_rate: np.ndarray,
    express: np.ndarray,
    fatigue: np.ndarray,
    lapsed: np.ndarray,
) -> np.ndarray:
    """The true probability that each shopper accepts their offer. `days_to_due` is the days
    until the shopper's next replenishment falls due (inf without a need)."""
    closeness = np.exp(-np.maximum(days_to_due, 0.0) / params.need_days)
    logit = (
        params.base
        + params.need * closeness
        + params.sensitivity * np.log(coupon_response)
        + params.per_discount * discount_rate
        + params.express * express
        - params.fatigue * fatigue
        + params.lapsed * lapsed
    )
    return 1.0 / (1.0 + np.exp(-logit))


def read_offers(offers, user_index: dict[str, int], day: int, start: np.datetime64) -> dict:
    """A policy's offers as arrays; OfferError names what is wrong."""
    frame = offers.to_pandas() if isinstance(offers, pa.Table) else pd.DataFrame(offers)
    need = ["user_id", "incentive", "discount_rate", "suggested_date"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise OfferError(f"offers lack column(s) {', '.join(missing)}")
    users = frame["user_id"].map(user_index)
    if users.isna().any():
        bad = frame.loc[users.isna(), "user_id"].iloc[0]
        raise OfferError(f"offers: user_id {bad!r} is not a shopper of this world")
    kind = frame["incentive"].map({k: i for i, k in enumerate(T.INCENTIVES)})
    if kind.isna().any():
        bad = frame.loc[kind.isna(), "incentive"].iloc[0]
        raise OfferError(f"offers: incentive {bad!r} is not one of {', '.join(T.INCENTIVES)}")
    rate = pd.to_numeric(frame["discount_rate"], errors="coerce").to_numpy(float)
    bad_rate = ~((rate >= 0) & (rate < 1)) | ((kind == 1).to_numpy() & (rate != 0))
    if bad_rate.any():
        row = int(np.argmax(bad_rate))
        raise OfferError(
            f"offers row {row + 1}: discount_rate {frame['discount_rate'].iloc[row]!s} must "
            "lie in [0, 1), and be 0 for an express upgrade"
        )
    dates = pd.to_datetime(frame["suggested_date"], errors="coerce")
    suggested = (dates.to_numpy("datetime64[D]") - start).astype(np.int64)
    if dates.isna().any() or (suggested <= day).any():
        row = int(np.argmax(dates.isna().to_numpy() | (suggested <= day)))
        raise OfferError(
            f"offers row {row + 1}: suggested_date {frame['suggested_date'].iloc[row]!s} must be "
            "a date after the day the offer is sent"
        )
    if users.duplicated().any():
        bad = frame.loc[users.duplicated(), "user_id"].iloc[0]
        raise OfferError(f"offers: user_id {bad!r} is offered twice on one day")
    return {
        "user": users.to_numpy(np.int64),
        "express": (kind == 1).to_numpy(),
        "rate": rate,
        "suggested": suggested,
    }


class OfferLog:
    """Every offer sent so far: what it offered, when the shopper accepted or cancelled it (-1:
    never), and the order it became."""

    def __init__(self) -> None:
        self.cols: dict[str, np.ndarray] = {
            k: np.zeros(0, dtype=d)
            for k, d in [
                ("user", np.int64),
                ("sent_us", np.int64),
                ("express", bool),
                ("rate", float),
                ("suggested", np.int64),
                ("blocked", bool),
                ("accepted_us", np.int64),
                ("cancelled_us", np.int64),
                ("order", np.int64),
                ("order_us", np.int64),
                ("p_accept", float),
                ("days_to_due", float),
                ("lapsed", bool),
            ]
        }

    def add(self, **cols: np.ndarray) -> np.ndarray:
        size = np.asarray(cols["user"]).size
        rows = np.arange(self.cols["user"].size, self.cols["user"].size + size)
        for k in self.cols:
            fill = cols.get(k, np.full(size, -1))
            self.cols[k] = np.concatenate([self.cols[k], np.asarray(fill, self.cols[k].dtype)])
        return rows

    def placed(self, rows: np.ndarray, order_ids: np.ndarray, at_us: np.ndarray) -> None:
        self.cols["order"][rows] = order_ids
        self.cols["order_us"][rows] = at_us

    def table(self, ids, start: np.datetime64, *, now_us: int | None = None) -> pa.Table:
        """The raw offers table; with `now_us`, as the shop knew it then (a later answer, or a
        later order, not yet)."""
        c = self.cols
        keep = np.ones(c["user"].size, dtype=bool) if now_us is None else c["sent_us"] < now_us
        c = {k: v[keep] for k, v in c.items()}

        def by_now(t: np.ndarray) -> np.ndarray:
            return t if now_us is None else np.where(t < now_us, t, -1)

        accepted, cancelled, order_us = (
            by_now(c[k]) for k in ("accepted_us", "cancelled_us", "order_us")
        )
        response = np.select([c["blocked"], cancelled >= 0, accepted >= 0], [3, 1, 0], default=2)
        responded = np.where(cancelled >= 0, cancelled, accepted)
        order = np.where(order_us >= 0, c["order"], -1)
        return to_table(
            "offers",
            {
                "offer_id": np.flatnonzero(keep) + 1,
                "user_id": Lookup("user", c["user"]),
                "sent_at": c["sent_us"],
                "incentive": Lookup("incentive", c["express"].astype(np.int64)),
                "discount_rate": c["rate"],
                "suggested_date": start + c["suggested"],
                "response": Lookup("response", response),
                "responded_at": Nullable(responded, responded < 0),
                "order_id": Nullable(order, order < 0),
            },
            {"user": ids.user, **LOOKUPS},
        )

    def truth(self, ids) -> pa.Table:
        """The true chance each offer had of being accepted, how far the shopper's next
        replenishment was (inf: no need), and whether they had lapsed."""
        c = self.cols
        return pa.table(
            {
                "offer_id": pa.array(np.arange(1, c["user"].size + 1)),
                "user_id": ids.user.take(pa.array(c["user"])),
                "p_accept": pa.array(c["p_accept"]),
                "days_to_due": pa.array(c["days_to_due"]),
                "lapsed": pa.array(c["lapsed"]),
            }
        )


LOOKUPS = {
    "incentive": pa.array(list(T.INCENTIVES)),
    "response": pa.array(list(T.OFFER_RESPONSES)),
}
