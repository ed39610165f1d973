"""The audit's routing section: groups under nearest and under the router, read from a saved
replay, and the largest fall in a group's next-day rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.audits._report import render_html
from cadence.audits._routing import routing_groups, routing_section, worst_next_day_drop
from tests.audits._doc import audit_document

pytestmark = pytest.mark.unit


def _outcomes() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """200 orders: the router slows the east's deliveries and speeds the west's."""
    rng = np.random.default_rng(3)
    ids = np.arange(200)
    region = np.where(ids < 100, "east", "west")
    base = pd.DataFrame(
        {
            "order_id": ids,
            "assigned": True,
            "cost": rng.uniform(10, 20, 200),
            "days": rng.uniform(1, 3, 200),
            "next_day": ids % 2 == 0,
        }
    )
    routed = base.copy()
    routed.loc[ids < 100, "next_day"] = ids[ids < 100] % 4 == 0  # east: half as often
    routed.loc[ids >= 100, "next_day"] = True
    attributes = pd.DataFrame({"order_id": ids, "region": region})
    return {"nearest": base, "optimal": routed}, attributes


def test_the_largest_fall_names_its_group():
    outcomes, attributes = _outcomes()
    groups = routing_groups(outcomes, attributes, ["region"], min_orders=30)
    assert len(groups) == 4 and groups.reported.all()
    drop, worst = worst_next_day_drop(groups, "nearest", "optimal")
    assert drop == pytest.approx(0.25) and worst == "region=east"
    # Groups too small to compare are shown but not judged.
    small = routing_groups(outcomes, attributes, ["region"], min_orders=150)
    assert worst_next_day_drop(small, "nearest", "optimal") == (0.0, "no group large enough")
    # No fall at all is said so.
    same = {"nearest": outcomes["nearest"], "optimal": outcomes["nearest"]}
    flat = routing_groups(same, attributes, ["region"])
    assert worst_next_day_drop(flat, "nearest", "optimal") == (
        0.0,
        "no group's next-day rate fell",
    )


def test_the_report_shows_the_saved_replay_per_group():
    outcomes, attributes = _outcomes()
    groups = routing_groups(outcomes, attributes, ["region"])
    drop, worst = worst_next_day_drop(groups, "nearest", "optimal")
    saved = {
        "model": "models:/routing@champion",
        "days": ["2026-06-03", "2026-06-30"],
        "audit": {
            "groups": groups.to_dict(orient="records"),
            "max_next_day_drop": drop,
            "worst_group": worst,
        },
    }
    assert routing_section(None, limit=0.05) is None
    section = routing_section(saved, limit=0.05)
    assert section["status"] == "WARN" and "region=east" in section["note"]
    assert routing_section(saved, limit=0.3)["status"] == "PASS"
    doc = audit_document(routing=section)
    html = render_html(doc)
    routing_part = html.split("<h2>Routing</h2>")[1].split("<h2>")[0]
    assert "models:/routing@champion replayed 2026-06-03 to 2026-06-30" in routing_part
    assert routing_part.count("<tr>") == 1 + len(groups)
    # The routing section informs; it does not move the targeting audit's verdict.
    assert doc["verdict"] == audit_document()["verdict"]
