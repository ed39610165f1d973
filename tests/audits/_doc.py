"""An audit document as the audit step writes it, from rows built here."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cadence.audits import AuditSettings, Scored, audit, groupings

SETTINGS = {
    "sensitive": ["gender", "age_band"],
    "proxies": ["city_tier"],
    "intersections": [["gender", "age_band"]],
    "gated": ["sensitive", "intersection"],
    "min_group_shoppers": 200,
    "resamples": 200,
    "level": 0.95,
    "seed": 0,
    "thresholds": {
        "demographic_parity_ratio": 0.8,
        "equalized_odds_difference": 0.1,
        "calibration_gap": 0.05,
    },
    "mitigation": {"constraints": "demographic_parity", "policy": "block"},
}


def audit_document(
    shift: float = 0.2,
    n: int = 12000,
    *,
    users_table: bool = True,
    merging: dict | None = None,
    routing: dict | None = None,
) -> dict:
    """`users_table=False`: an imported order log's audit, every grouping missing."""
    rng = np.random.default_rng(4)
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(4000)],
            "gender": rng.choice(["female", "male", "undisclosed"], 4000, p=[0.5, 0.47, 0.03]),
            "age_band": rng.choice(["18-24", "25-34", "35-44", "55+"], 4000),
            "city_tier": rng.integers(1, 4, 4000),
        }
    )

    def scored(seed):
        r = np.random.default_rng(seed)
        ids = pd.Series([f"u{i}" for i in r.integers(0, 4200, n)])  # some not in users
        old = ids.map(users.set_index("user_id").age_band).to_numpy() == "55+"
        truth = r.beta(2, 5, n)
        y = (r.random(n) < truth).astype(int)
        return Scored(ids, y, np.clip(truth - np.where(old, shift, 0.0), 0, 1))

    def groups(s):
        return groupings(
            users if users_table else None,
            s.user_ids,
            sensitive=["gender", "age_band"],
            proxies=["city_tier"],
            intersections=[["gender", "age_band"]],
        )

    test, cal = scored(1), scored(2)
    doc = audit(
        test,
        groups(test),
        threshold=0.3,
        settings=AuditSettings(resamples=200),
        calibration=cal,
        calibration_groups=groups(cal),
        merging=merging,
        routing=routing,
    )
    doc.update(
        {
            "model": {
                "name": "repurchase",
                "version": "3",
                "uri": "models:/repurchase/3",
                "propensity": "xgboost",
                "horizon_days": 30,
                "features": 234,
                "train_window": "2025-01-06..2025-05-05",
                "calibrate_window": "2025-06-02..2025-06-23",
                "test_window": "2025-07-21..2025-08-11",
            },
            "data": {
                "window": "2025-07-21..2025-08-11",
                "population": "shoppers with an order in the 365 days before each test snapshot",
                "features_fingerprint": "0123456789abcdef",
                "raw_fingerprint": "fedcba9876543210",
            },
            "performance": {"roc_auc": 0.78, "brier": 0.15, "ece": 0.01},
            "proxy_risk": {
                "snapshot": "2025-08-11",
                "attributes": {
                    "gender": {
                        "n": 4000,
                        "values": ["female", "male"],
                        "roc_auc": 0.55,
                        "folds": 3,
                        "top_features": [{"feature": "orders_30d", "share": 0.2}],
                    },
                },
                "missing": {"age_band": "column 'age_band' of the users table is empty"},
            },
            "thresholds": SETTINGS["thresholds"],
            "settings": SETTINGS,
            "operating_threshold": 0.3,
            "inputs_key": "k",
            "audited_at": "2025-08-20T10:00:00+00:00",
            "history": {"note": "no champion before this model: nothing to compare with"},
            "seconds": 12.5,
        }
    )
    return doc
