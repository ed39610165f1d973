"""The merge service's offers, audited: who is offered, who confirms, cancels or leaves a
merge, per group; and incentive parity within each cohort.

The rates are shown beside each other for a reviewer to read (a group offered less often, or
whose merges fail more, is a question to ask); the parity check gates: two incentives within
one cohort is a FAIL, as personalised prices are what the cohort rule exists to prevent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cadence.audits._audit import incentive_parity

OFFER_COLUMNS = ("offer_id", "user_id", "cohort", "incentive", "discount_rate", "state")


def merging_section(
    offers: pd.DataFrame | None,
    *,
    users: pd.DataFrame | None,
    listed: pd.Series | None,
    attributes: Sequence[str],
) -> dict[str, Any]:
    """`offers`: the service's offers (OFFER_COLUMNS, `reason`, and `confirmed`: ever
    confirmed); `users`: user_id and the attributes; `listed`: the user ids on the model's
    latest list, the offer rate's denominator (None: not shown)."""
    if offers is None or offers.empty:
        return {"status": "not yet audited", "note": "the merge service has made no offers yet"}
    parity = cohort_parity(offers)
    groups: dict[str, list[dict[str, Any]]] = {}
    present = [a for a in attributes if users is not None and a in users.columns]
    for attribute in present:
        label = users.set_index("user_id")[attribute].astype("string").fillna("unknown")
        offered = offers.assign(group=offers.user_id.map(label).fillna("unknown"))
        base = None
        if listed is not None:
            base = pd.Series(listed).map(label).fillna("unknown").value_counts()
        rows = []
        for name, part in offered.groupby("group", sort=True):
            confirmed = int(part.confirmed.sum())
            row = {
                "group": str(name),
                "offers": len(part),
                "shoppers_offered": int(part.user_id.nunique()),
                "confirmation_rate": confirmed / len(part),
                "cancellation_rate": float((part.reason == "user_cancelled").mean()),
                "exit_rate": (int((part.state == "exited").sum()) / confirmed)
                if confirmed
                else None,
            }
            if base is not None and base.get(name, 0):
                row["offer_rate"] = row["shoppers_offered"] / int(base[name])
            rows.append(row)
        groups[attribute] = rows
    missing = [a for a in attributes if a not in present]
    return {
        "status": parity["status"],
        "offers": len(offers),
        "shoppers": int(offers.user_id.nunique()),
        "incentive_parity": parity,
        "groups": groups,
        "missing": missing,
        "note": parity["note"],
    }


def cohort_parity(offers: pd.DataFrame) -> dict[str, Any]:
    """Exact: any campaign cohort whose offers hold two incentives (kind or rate) fails."""
    return incentive_parity(offers, offers.cohort, whose=" of the merge service")
