"""The audit of a targeting model: every grouping's checks, proxy risk, the mitigation beside
it, incentive parity, and one verdict.

Pure: arrays and frames in, one JSON-ready document out. `flows.steps.audits` reads the
workspace and the registry, and writes the document and its renderings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cadence.audits._fairness import (
    FAIL,
    PASS,
    WARN,
    Limits,
    Resample,
    audit_grouping,
    verdict,
)
from cadence.audits._groups import Groupings
from cadence.audits._mitigate import (
    POOLED,
    decisions,
    fit_thresholds,
    offer_probability,
    stored_form,
)

# Sections an audit will hold once their stage exists; until then they say so.
NOT_YET = {
    "merging": "not yet audited: the merge service has made no offers yet",
    "routing": "not yet audited: routing has not been replayed (`cadence route evaluate`)",
}


@dataclass(frozen=True)
class AuditSettings:
    """conf/audits.yaml, as the audit reads it."""

    sensitive: tuple[str, ...] = ("gender", "age_band")
    proxies: tuple[str, ...] = ("city_tier", "region")
    intersections: tuple[tuple[str, ...], ...] = (("gender", "age_band"),)
    # Which kinds of grouping count toward the verdict; the others are shown, checked, and
    # marked as not gating.
    gated: tuple[str, ...] = ("sensitive", "intersection")
    min_group_shoppers: int = 200
    resamples: int = 1000
    level: float = 0.95
    seed: int = 0
    limits: Limits = field(default_factory=Limits)
    mitigation: str = "demographic_parity"
    mitigation_objective: str = "balanced_accuracy_score"


@dataclass(frozen=True)
class Scored:
    """Labelled rows and the model's probabilities for them."""

    user_ids: pd.Series
    y: np.ndarray
    p: np.ndarray


def _sections(
    scored: Scored,
    offered: np.ndarray,
    groups: Groupings,
    settings: AuditSettings,
    resample: Resample,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, kind in groups.kinds.items():
        entry: dict[str, Any] = {"kind": kind, "gates": kind in settings.gated}
        if name in groups.missing:
            entry.update(
                missing=groups.missing[name],
                status=WARN,
                note=f"not audited: {groups.missing[name]}",
            )
        else:
            entry.update(
                audit_grouping(
                    scored.y,
                    scored.p,
                    offered=offered,
                    sensitive_features=groups.labels[name].reset_index(drop=True),
                    resample=resample,
                    min_shoppers=settings.min_group_shoppers,
                    limits=settings.limits,
                    level=settings.level,
                )
            )
            entry["status"] = verdict([c["status"] for c in entry["checks"]])
        out[name] = entry
    return out


def overall(sections: dict[str, dict[str, Any]], extra: Sequence[str] = ()) -> dict[str, Any]:
    """The verdict over the gating sections (a missing one is WARN, never PASS), and the
    checks that did not pass."""
    statuses, failing = list(extra), []
    for name, s in sections.items():
        if not s["gates"]:
            continue
        statuses.append(s["status"])
        if "missing" in s:
            failing.append({"grouping": name, "status": WARN, "check": "missing"})
        for c in s.get("checks", []):
            if c["status"] != PASS:
                failing.append({"grouping": name, **c})
    return {"verdict": verdict(statuses) if statuses else WARN, "not_passing": failing}


def _worst(sections: dict[str, dict[str, Any]], constraint_gap: str) -> str | None:
    """The gating grouping whose constraint check is furthest from its limit: the one a
    post-processor should equalise."""
    best, name = None, None
    for key, s in sections.items():
        if not s["gates"] or "gaps" not in s or constraint_gap not in s["gaps"]:
            continue
        check = next(c for c in s["checks"] if c["gap"] == constraint_gap)
        est = check["estimate"]
        if est is None:
            continue
        excess = (check["limit"] - est) if check["side"] == "at_least" else (est - check["limit"])
        if best is None or excess > best:
            best, name = excess, key
    return name


_CONSTRAINT_GAP = {
    "demographic_parity": "demographic_parity_ratio",
    "equalized_odds": "equalized_odds_difference",
}


def _costs(scored: Scored, offered: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """What a set of decisions buys: offers, orders among the offered (observed in the test
    window, and expected by the model's calibrated probability), and the ROC AUC of the
    score that ranks shoppers for them."""
    y = scored.y
    both = 0 < y.sum() < len(y)
    return {
        "offers": int(offered.sum()),
        "orders_reached": int(y[offered].sum()),
        "orders_per_offer": float(y[offered].mean()) if offered.any() else float("nan"),
        "expected_orders": float(scored.p[offered].sum()),
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
    }


def mitigation(
    calibration: Scored,
    test: Scored,
    calibration_groups: Groupings,
    test_groups: Groupings,
    *,
    threshold: float,
    sections: dict[str, dict[str, Any]],
    settings: AuditSettings,
    resample: Resample,
) -> dict[str, Any]:
    """A ThresholdOptimizer fitted on the calibration slice for the grouping that misses its
    constraint most, applied to the test rows, audited like the model, with what it costs."""
    constraint = settings.mitigation
    attribute = _worst(sections, _CONSTRAINT_GAP[constraint])
    if attribute is None:
        return {"note": "no gating grouping could be measured: nothing to mitigate"}
    # Thresholds are fitted per group large enough to compare; the smaller groups are pooled
    # into one, so none gets a threshold fitted to its own noise, and none is left out of
    # the constraint (a group the calibration slice lacks joins the pool too).
    labels = calibration_groups.labels[attribute].reset_index(drop=True)
    shoppers = (
        pd.DataFrame({"g": labels, "u": calibration.user_ids.reset_index(drop=True)})
        .drop_duplicates()
        .g.value_counts()
    )
    small = shoppers[shoppers < settings.min_group_shoppers].index
    fitted = labels.where(~labels.isin(small), POOLED)
    if fitted.nunique() < 2:
        return {"note": f"fewer than two {attribute} groups to fit thresholds on"}
    optimizer = fit_thresholds(
        calibration.y,
        calibration.p,
        fitted,
        constraints=constraint,
        objective=settings.mitigation_objective,
    )
    stored = stored_form(optimizer, attribute=attribute, fallback=threshold)
    groups = test_groups.labels[attribute]
    chance = offer_probability(stored, test.p, groups)
    offered = decisions(stored, test.p, groups, test.user_ids, settings.seed)
    plain = test.p >= threshold
    after = _sections(test, offered, test_groups, settings, resample)
    return {
        "constraints": constraint,
        "objective": stored["objective"],
        "attribute": attribute,
        "fitted_on": "calibration slice",
        "postprocessor": stored,
        "sensitive_input": (
            f"{attribute} reaches the variant only as the post-processor's group input; "
            "the model's features are unchanged"
        ),
        "before": _costs(test, plain, test.p),
        # The variant ranks by its chance of an offer: what its decisions are worth as a score.
        "after": _costs(test, offered, chance),
        "sections": after,
        **overall(after),
    }


def incentive_parity(
    offers: pd.DataFrame | None, cohorts: pd.Series | None = None, *, whose: str = ""
) -> dict[str, Any]:
    """Everyone in a cohort gets the same incentive: exact, so any cohort holding two
    incentives (kind or rate) fails. Cohorts are the offers' sending days unless `cohorts`
    names them (the merge service's campaign). Not audited while no offers exist."""
    if offers is None or offers.empty:
        return {"status": "not yet audited", "note": "no offers were sent yet"}
    if cohorts is None:
        cohorts = pd.to_datetime(offers.sent_at, utc=True).dt.date.rename("sent_date")
    terms = offers.incentive.astype(str) + " " + offers.discount_rate.round(6).astype(str)
    per = terms.groupby(cohorts).nunique()
    mixed = per[per > 1]
    return {
        "status": FAIL if len(mixed) else PASS,
        "cohorts": len(per),
        "offers": len(offers),
        "mixed_cohorts": [str(d) for d in mixed.index[:20]],
        "note": (
            f"{len(mixed)} of {len(per)} cohorts{whose} held more than one incentive"
            if len(mixed)
            else f"every one of {len(per)} cohorts{whose} held one incentive"
        ),
    }


def audit(
    test: Scored,
    test_groups: Groupings,
    *,
    threshold: float,
    settings: AuditSettings,
    calibration: Scored | None = None,
    calibration_groups: Groupings | None = None,
    offers: pd.DataFrame | None = None,
    offered: np.ndarray | None = None,
    merging: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The targeting audit of one model on its test rows, the mitigation beside it (fitted on
    the calibration rows, when given), and incentive parity. `offered`: the decisions of a
    post-processed variant, in place of `p >= threshold`. `routing`: the latest routing
    replay's groups, shown for the reviewer (routing's own promotion gate judges them)."""
    resample = Resample.of(test.user_ids.to_numpy(), settings.resamples, settings.seed)
    offered = test.p >= threshold if offered is None else np.asarray(offered, bool)
    sections = _sections(test, offered, test_groups, settings, resample)
    incentives = incentive_parity(offers)
    extra = [incentives["status"]] if incentives["status"] in (PASS, FAIL) else []
    if merging is not None and merging["status"] in (PASS, FAIL):
        extra.append(merging["status"])
    doc: dict[str, Any] = {
        "targeting": {
            "threshold": threshold,
            "rows": len(test.y),
            "customers": int(resample.draws.shape[1]),
            "offered": int(offered.sum()),
            "sections": sections,
        },
        "incentive_parity": incentives,
        **{k: {"status": "not yet audited", "note": v} for k, v in NOT_YET.items()},
        **overall(sections, extra),
    }
    if incentives["status"] == FAIL:
        doc["not_passing"].append(
            {"grouping": "offers", "check": "incentive_parity", "status": FAIL}
        )
    if routing is not None:
        doc["routing"] = routing
    if merging is not None:
        doc["merging"] = merging
        if merging["status"] == FAIL:
            doc["not_passing"].append(
                {"grouping": "merging", "check": "incentive_parity", "status": FAIL}
            )
    if calibration is not None and calibration_groups is not None:
        doc["mitigation"] = mitigation(
            calibration,
            test,
            calibration_groups,
            test_groups,
            threshold=threshold,
            sections=sections,
            settings=settings,
            resample=resample,
        )
    return doc
