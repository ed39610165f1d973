"""The merge campaign as a policy: each day, offers to the eligible shoppers of the treatment
group, by the service's own rules.

A shopper's group is drawn once, when they are first eligible, from a hash of the campaign's
seed and their id: treatment gets the cohort's offer, control gets nothing, and both are
followed alike. The scores are one list's (the champion's, as of the campaign's first day), as
marketing would work from it; the shopper's own state (consent, offers lately, a live offer) is
read each day from what the shop can see then.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cadence.serving._config import OfferRules
from cadence.serving._rules import Score, Shopper, offer_terms, score_reason, shopper_reason

SEND_HOUR = 9  # offers go out at 09:00 UTC


def arm_of(user_id: str, seed: int, treatment_share: float) -> str:
    """`treatment` or `control`, fixed by the seed and the id alone."""
    digest = hashlib.blake2b(f"{seed}:{user_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "treatment" if u < treatment_share else "control"


@dataclass
class CampaignPolicy:
    """Called by the world each day with the shop's view; returns the day's offers."""

    scores: pd.DataFrame  # user_id, probability, expected_next_order (date or None)
    rules: OfferRules
    start: dt.date
    days: int
    seed: int = 0
    treatment_share: float = 0.5
    # The first date an order can no longer be placed on (the world's end): no offer suggests it.
    until: dt.date | None = None
    # user -> (arm, first eligible day)
    assigned: dict[str, tuple[str, dt.date]] = field(default_factory=dict)
    sent: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        expected = pd.to_datetime(self.scores.expected_next_order)
        self._scores = {
            u: Score(float(p), None if pd.isna(e) else e.date(), "")
            for u, p, e in zip(self.scores.user_id, self.scores.probability, expected, strict=True)
        }

    def __call__(self, view) -> pd.DataFrame | list:
        day = view.date
        if not self.start <= day < self.start + dt.timedelta(days=self.days):
            return []
        now = dt.datetime.combine(day, dt.time(SEND_HOUR), tzinfo=dt.UTC)
        withdrawn = _withdrawn(view.table("consents").to_pandas())
        recent, live = _offer_state(view.table("offers").to_pandas(), now, self.rules)
        rows = []
        for user, score in self._scores.items():
            if score_reason(score, now=now, rules=self.rules) is not None:
                continue
            shopper = Shopper(
                profiling_withdrawn=(user, "profiling") in withdrawn,
                contact_withdrawn=(user, "contact") in withdrawn,
                live_offer=user in live,
                recent_offers=recent.get(user, 0),
            )
            if shopper_reason(shopper, now=now, rules=self.rules) is not None:
                continue
            arm, _ = self.assigned.setdefault(
                user, (arm_of(user, self.seed, self.treatment_share), day)
            )
            if arm != "treatment":
                continue
            terms = offer_terms(score, now=now, rules=self.rules)
            if self.until is not None and terms.suggested_date >= self.until:
                continue
            rows.append({"user_id": user, "suggested_date": terms.suggested_date})
        self.sent += [{**r, "day": day} for r in rows]
        if not rows:
            return []
        out = pd.DataFrame(rows)
        out["incentive"] = self.rules.incentive.kind
        out["discount_rate"] = self.rules.incentive.discount_rate
        return out

    def groups(self) -> pd.DataFrame:
        """Every shopper assigned: user_id, arm, first eligible day."""
        return pd.DataFrame(
            [(u, a, d) for u, (a, d) in self.assigned.items()],
            columns=["user_id", "arm", "first_day"],
        )


def _withdrawn(consents: pd.DataFrame) -> set[tuple[str, str]]:
    if consents.empty:
        return set()
    last = consents.sort_values("changed_at").groupby(["user_id", "purpose"]).granted.last()
    return set(last.index[~last.to_numpy(bool)])


def _offer_state(offers: pd.DataFrame, now: dt.datetime, rules: OfferRules):
    """Offers per shopper within the contact cap's window, and shoppers with a live offer: one
    still open (sent within its validity), or an acceptance whose order has not come yet."""
    if offers.empty:
        return {}, set()
    sent = pd.to_datetime(offers.sent_at, utc=True)
    window = sent > now - dt.timedelta(days=rules.contact_cap.days)
    recent = offers[window.to_numpy()].user_id.value_counts().to_dict()
    suggested = pd.to_datetime(offers.suggested_date).dt.date
    pending = (offers.response == "accepted") & offers.order_id.isna() & (suggested >= now.date())
    still_open = sent > now - dt.timedelta(hours=rules.valid_hours)
    return recent, set(offers.user_id[np.asarray(pending | still_open)])
