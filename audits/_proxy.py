"""Proxy risk: how well a model's own inputs predict a sensitive attribute it never reads.

A model that never sees gender can still treat genders differently when its features encode
gender. This fits a classifier from the model's features to each sensitive attribute and
reports its cross-validated ROC AUC (0.5: the features say nothing about the attribute; 1:
they give it away) and the features that carry most of it. It shows where a gap could come
from; it does not show that the model uses that information.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from xgboost import XGBClassifier

from cadence.audits._fairness import UNKNOWN


def _classifier(n_classes: int, seed: int, n_jobs: int) -> XGBClassifier:
    return XGBClassifier(
        n_estimators=100,
        max_depth=4,
        learning_rate=0.1,
        subsample=0.8,
        colsample_bytree=0.5,
        tree_method="hist",
        # Coarser bins than the default 256 shorten histogram building, most of the time
        # here; on the default world the AUCs moved by under 0.003.
        max_bin=64,
        objective="binary:logistic" if n_classes == 2 else "multi:softprob",
        random_state=seed,
        n_jobs=n_jobs,
    )


def proxy_risk(
    features: pd.DataFrame,
    targets: Mapping[str, pd.Series],
    *,
    folds: int = 3,
    top: int = 10,
    max_rows: int = 20_000,
    seed: int = 0,
    n_jobs: int = 2,
) -> dict[str, dict[str, Any]]:
    """Per attribute in `targets` (labels aligned with the rows of `features`, "unknown" left
    out): the cross-validated ROC AUC of predicting it from `features` (one-vs-rest, macro
    averaged, for more than two values), the rows and values it was judged on, and the `top`
    features by their share of the classifier's total gain. At most `max_rows` rows, drawn
    at random, are used."""
    out: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(seed)
    x_all = features.astype("float32").reset_index(drop=True)
    for name, labels in targets.items():
        y_text = pd.Series(labels).reset_index(drop=True).astype("string")
        keep = (y_text != UNKNOWN) & y_text.notna()
        # A value held by fewer rows than folds cannot be stratified: it is left out, and said.
        counts = y_text[keep].value_counts()
        rare = sorted(str(v) for v in counts[counts < 2 * folds].index)
        keep &= ~y_text.isin(rare)
        rows = np.flatnonzero(keep.to_numpy())
        if len(rows) > max_rows:
            rows = np.sort(rng.choice(rows, max_rows, replace=False))
        classes, y = np.unique(y_text.iloc[rows].to_numpy(dtype=str), return_inverse=True)
        entry: dict[str, Any] = {"n": len(rows), "values": [str(c) for c in classes]}
        if rare:
            entry["left_out"] = rare
        if len(classes) < 2:
            entry["note"] = "fewer than two values with enough rows: nothing to predict"
            out[name] = entry
            continue
        x = x_all.iloc[rows].to_numpy()
        names = list(x_all.columns)
        # Out-of-fold probabilities for the AUC; the fold models' gains, summed, for the
        # features carrying it (no extra fit on all rows).
        proba = np.zeros((len(rows), len(classes)))
        gain: dict[str, float] = {}
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for fit_rows, held_out in cv.split(x, y):
            model = _classifier(len(classes), seed, n_jobs).fit(x[fit_rows], y[fit_rows])
            proba[held_out] = model.predict_proba(x[held_out])
            for key, value in model.get_booster().get_score(importance_type="total_gain").items():
                feature = names[int(key[1:])]  # XGBoost names array columns f0, f1, ...
                gain[feature] = gain.get(feature, 0.0) + value
        if len(classes) == 2:
            auc = roc_auc_score(y, proba[:, 1])
        else:
            auc = roc_auc_score(y, proba, multi_class="ovr", average="macro")
        total = sum(gain.values()) or 1.0
        ranked = sorted(gain.items(), key=lambda kv: -kv[1])[:top]
        entry.update(
            {
                "roc_auc": float(auc),
                "folds": folds,
                "top_features": [{"feature": f, "share": float(g / total)} for f, g in ranked],
            }
        )
        out[name] = entry
    return out
