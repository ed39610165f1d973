"""The campaign policy: groups fixed by seed and id, offers only to the treatment group's
eligible shoppers, by the service's rules, and only within the campaign's days."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from cadence.ingest import _tables as T
from cadence.serving._campaign import CampaignPolicy, arm_of
from cadence.serving._config import OfferRules

pytestmark = pytest.mark.unit
START = dt.date(2026, 3, 2)


class View:
    def __init__(self, day: dt.date, consents=None, offers=None) -> None:
        self.date = day
        self._tables = {"consents": consents, "offers": offers}

    def table(self, name: str) -> pa.Table:
        frame = self._tables[name]
        if frame is None:
            return T.SCHEMAS[name].empty_table()
        return pa.Table.from_pandas(frame, schema=T.SCHEMAS[name], preserve_index=False)


def _scores(n: int = 400) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"U{i:05d}" for i in range(n)],
            "probability": [0.9 if i % 4 else 0.1 for i in range(n)],
            "expected_next_order": [pd.Timestamp(START + dt.timedelta(days=5))] * n,
        }
    )


def _policy(**kw) -> CampaignPolicy:
    return CampaignPolicy(scores=_scores(), rules=OfferRules(), start=START, days=7, **kw)


def test_groups_are_fixed_by_seed_and_id_and_split_about_evenly():
    ids = [f"U{i:05d}" for i in range(4000)]
    arms = [arm_of(u, 3, 0.5) for u in ids]
    assert arms == [arm_of(u, 3, 0.5) for u in ids]
    assert 0.46 < arms.count("treatment") / len(ids) < 0.54
    assert arms != [arm_of(u, 4, 0.5) for u in ids]


def test_only_eligible_treatment_shoppers_get_the_cohorts_offer():
    policy = _policy()
    sent = policy(View(START))
    groups = policy.groups()
    eligible = set(_scores().query("probability >= 0.3").user_id)
    assert set(groups.user_id) == eligible
    treated = set(groups.user_id[groups.arm == "treatment"])
    assert set(sent.user_id) == treated and 0 < len(treated) < len(eligible)
    assert set(sent.incentive) == {"express_upgrade"} and set(sent.discount_rate) == {0.0}
    # Three days before the expected order, by the service's own terms.
    assert set(sent.suggested_date) == {START + dt.timedelta(days=2)}


def test_no_offers_outside_the_campaigns_days():
    policy = _policy()
    assert len(policy(View(START - dt.timedelta(days=1)))) == 0
    assert len(policy(View(START + dt.timedelta(days=7)))) == 0
    assert policy.groups().empty


def test_an_open_offer_is_not_sent_again_while_valid():
    policy = _policy()
    first = policy(View(START))
    now = pd.Timestamp(START, tz="UTC") + pd.Timedelta(hours=9)
    offers = pd.DataFrame(
        {
            "offer_id": range(1, len(first) + 1),
            "user_id": first.user_id,
            "sent_at": now,
            "incentive": "express_upgrade",
            "discount_rate": 0.0,
            "suggested_date": START + dt.timedelta(days=2),
            "response": "ignored",
            "responded_at": None,
            "order_id": None,
        }
    )
    assert len(policy(View(START + dt.timedelta(days=1), offers=offers))) == 0
    assert len(policy(View(START + dt.timedelta(days=2), offers=offers))) == len(first)


def test_withdrawn_consent_and_a_pending_acceptance_stop_offers():
    policy = _policy()
    first = policy(View(START))
    u1, u2 = first.user_id.iloc[0], first.user_id.iloc[1]
    now = pd.Timestamp(START, tz="UTC") + pd.Timedelta(hours=9)
    consents = pd.DataFrame(
        {"user_id": [u1], "changed_at": [now], "purpose": ["contact"], "granted": [False]}
    )
    offers = pd.DataFrame(
        {
            "offer_id": [1],
            "user_id": [u2],
            "sent_at": [now],
            "incentive": ["express_upgrade"],
            "discount_rate": [0.0],
            "suggested_date": [START + dt.timedelta(days=5)],
            "response": ["accepted"],
            "responded_at": [now],
            "order_id": [None],
        }
    )
    # Three days on, past the first offers' validity (the others' are not in this log).
    again = policy(View(START + dt.timedelta(days=3), consents=consents, offers=offers))
    assert u1 not in set(again.user_id) and u2 not in set(again.user_id)
    assert len(again) == len(first) - 2
