"""The audit's merging section: the service's offers per group, and one incentive per cohort
(any second incentive in a cohort fails the whole audit)."""

from __future__ import annotations

import pandas as pd
import pytest

from cadence.audits._merging import merging_section
from cadence.audits._report import render_html
from tests.audits._doc import audit_document

pytestmark = pytest.mark.unit


def _offers(discount_for_u3: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "offer_id": ["o1", "o2", "o3", "o4"],
            "user_id": ["u1", "u2", "u3", "u4"],
            "cohort": ["order-early"] * 4,
            "incentive": ["express_upgrade"] * 3 + ["express_upgrade"],
            "discount_rate": [0.0, 0.0, discount_for_u3, 0.0],
            "state": ["confirmed", "exited", "cancelled", "open"],
            "reason": [None, "fragile", "user_cancelled", None],
            "confirmed": [True, True, True, False],
        }
    )


USERS = pd.DataFrame(
    {"user_id": ["u1", "u2", "u3", "u4"], "gender": ["female", "female", "male", None]}
)


def test_rates_per_group_and_parity_within_the_cohort():
    section = merging_section(
        _offers(),
        users=USERS,
        listed=pd.Series(["u1", "u2", "u3", "u4", "u5", "u6"]),
        attributes=["gender", "age_band"],
    )
    assert section["status"] == "PASS" and section["missing"] == ["age_band"]
    rows = {r["group"]: r for r in section["groups"]["gender"]}
    assert rows["female"]["offers"] == 2 and rows["female"]["exit_rate"] == 0.5
    assert rows["male"]["cancellation_rate"] == 1.0
    assert rows["unknown"]["confirmation_rate"] == 0.0 and rows["unknown"]["exit_rate"] is None
    # u4 has no gender, u5 and u6 no users row: three unknown listed, one of them offered.
    assert rows["unknown"]["offer_rate"] == pytest.approx(1 / 3)


def test_a_second_incentive_in_a_cohort_fails_the_audit():
    section = merging_section(
        _offers(discount_for_u3=0.05), users=USERS, listed=None, attributes=["gender"]
    )
    assert section["status"] == "FAIL"
    assert section["incentive_parity"]["mixed_cohorts"] == ["order-early"]


def test_the_audit_carries_the_section_into_its_verdict_and_report():
    failing = merging_section(
        _offers(discount_for_u3=0.05), users=USERS, listed=None, attributes=["gender"]
    )
    without = audit_document()
    assert without["merging"]["status"] == "not yet audited"
    doc = audit_document(merging=failing)
    assert doc["verdict"] == "FAIL"
    assert {"grouping": "merging", "check": "incentive_parity", "status": "FAIL"} in doc[
        "not_passing"
    ]
    html = render_html(doc)
    assert "cohorts of the merge service held more than one incentive" in html
    assert "<h3>gender</h3>" in html
