"""Customer value step: expected spend per shopper over the next 90 and 365 days, from
BG/NBD x Gamma-Gamma and from Cadence's own XGBoost value model, each judged against the
spend realised after the as-of date beside a rule baseline, and the coverage of the list's
80% interval for `expected_spend_90d`, uncalibrated and calibrated.

Everything is fitted on what was known before the as-of date: the BTYD models on the orders
before it, the XGBoost model on snapshots whose label window ends by it, the interval's
calibration one horizon earlier. A horizon whose window after the as-of date runs past the
data's end is reported as skipped with the reason, as is a model the data cannot fit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from cadence.flows.steps._progress import Progress, Report, silent
from cadence.models._value import spend_metrics

HORIZONS = (90, 365)
INTERVAL_HORIZONS = (90,)  # the list carries the interval of the 90-day spend only
ORDER_COLUMNS = ("user_id", "ordered_at", "amount")


def value_as_of(
    snapshots: list[pd.Timestamp], data_end: pd.Timestamp, horizon: int = 90
) -> pd.Timestamp:
    """The latest snapshot whose `horizon`-day window ends by the data's end: the as-of date
    that leaves the most history for fitting while still judging that horizon."""
    window = pd.Timedelta(days=horizon)
    fitting = [s for s in snapshots if s + window <= data_end]
    if not fitting:
        raise ValueError(
            f"no feature snapshot leaves {horizon} days of data before the data's end "
            f"({data_end:%Y-%m-%d}); customer value cannot be judged on this data"
        )
    return max(fitting)


def _check_orders(orders: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ORDER_COLUMNS if c not in orders.columns]
    if missing:
        raise ValueError(f"orders: missing column(s) {', '.join(missing)}")
    o = orders[list(ORDER_COLUMNS)]
    if o.amount.isna().any():
        raise ValueError("orders: amount has missing values")
    return o.assign(amount=o.amount.astype(float))


def _btyd(fitted, horizon, realised) -> dict[str, Any]:
    model, summary = fitted
    pred = model.predict(summary, horizon, interval=False).expected_spend
    gg = model.gamma_gamma
    return {**spend_metrics(pred, realised), "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v}}


def _cadence(orders, features, as_of, horizon, population, realised, seed, n_jobs):
    from cadence.models._value_model import fit_spend_model

    rows = features[features.snapshot_at == as_of].drop_duplicates("user_id")
    if rows.empty:
        raise ValueError(f"the features hold no snapshot at the as-of date {as_of:%Y-%m-%d}")
    model, train = fit_spend_model(
        features, orders, as_of=as_of, horizon=horizon, seed=seed, n_jobs=n_jobs
    )
    at = rows.set_index("user_id").reindex(population)
    pred = pd.Series(model.predict(at), index=population)
    return {
        **spend_metrics(pred, realised),
        "objective": model.objective,
        "training_rows": len(train),
        "training_snapshots": int(train.snapshot_at.nunique()),
        "training_window": f"{train.snapshot_at.min():%Y-%m-%d}.."
        f"{train.snapshot_at.max():%Y-%m-%d}",
        "trees": model.best_iteration_ + 1,
        "shoppers_without_features": int((~population.isin(rows.user_id)).sum()),
    }


def _recent(orders, as_of, horizon, population, realised) -> dict[str, Any]:
    """The rule: each shopper spends in the next `horizon` days what they spent in the last."""
    start = as_of - pd.Timedelta(days=horizon)
    last = orders[(orders.ordered_at >= start) & (orders.ordered_at < as_of)]
    pred = last.groupby("user_id").amount.sum().reindex(population, fill_value=0.0)
    return spend_metrics(pred, realised)


def _interval(orders, as_of, horizon, fitted, realised, seed) -> dict[str, Any]:
    """Coverage and mean width of the nominal 80% interval, of the calibrated one (the list's)
    and of one pooled level for everyone (for comparison), over all shoppers, the buyers and
    the non-buyers in the window, and per calibration group."""
    from cadence.models._value import (
        LEVEL,
        group_names,
        interval_coverage,
        interval_note,
        spending_group,
    )

    model, summary = fitted
    r = realised.reindex(summary.index, fill_value=0.0).to_numpy(float)
    cal, note = interval_note(orders, as_of, horizon, calibrate=True, seed=seed)
    levels: dict[str, Any] = {"uncalibrated": LEVEL}
    if cal is not None:
        levels |= {"calibrated": cal, "pooled": cal.pooled_level}
    # One simulation gives every level's interval and the chance of any spend (the group).
    (lows, highs), buys = model.intervals(summary, horizon, list(levels.values()), seed=seed)
    group = spending_group(buys)
    names = group_names()
    out: dict[str, Any] = {"level": LEVEL, **{k: None for k in ("calibrated", "pooled")}}
    for name, lo, hi in zip(levels, lows, highs, strict=True):
        out[name] = {
            **interval_coverage(lo, hi, r),
            "buyers": interval_coverage(lo[r > 0], hi[r > 0], r[r > 0]),
            "non_buyers": interval_coverage(lo[r == 0], hi[r == 0], r[r == 0]),
            "groups": {
                n: {"shoppers": int((group == g).sum()), **interval_coverage(
                    lo[group == g], hi[group == g], r[group == g]
                )}
                for g, n in enumerate(names)
            },
        }  # fmt: skip
    out["calibration"] = note
    return out


def _try(skipped: list, name: str, fn, *args) -> dict[str, Any]:
    try:
        return fn(*args)
    except ValueError as exc:  # fit errors and data too short: say why, never fake a figure
        skipped.append(name)
        return {"skipped": str(exc)}


def value_report(
    orders: pd.DataFrame,
    features: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    data_end: pd.Timestamp,
    horizons: tuple[int, ...] = HORIZONS,
    seed: int = 0,
    n_jobs: int = 2,
    report: Report = silent,
) -> dict[str, Any]:
    """Expected spend in each horizon after `as_of`, by every value model, against the spend
    realised then, over the shoppers with an order before `as_of`.

    `orders`: `user_id, ordered_at, amount`; `features`: feature rows (`user_id, snapshot_at`
    and numeric features), holding the snapshot at `as_of` and the earlier ones to train on.

    Returns `{"as_of", "data_end", "shoppers", "seconds", "horizons": {"90d": ..., "365d": ...}}`
    where a horizon is `{"status": "skipped", "reason"}` or `{"status": "ok", "window",
    "shoppers", "buyers", "skipped_models", "models", "interval" (90 days only)}`. `models`
    maps `bgnbd_gamma_gamma`, `cadence_value`, `recent_spend` (the rule: the last `h` days'
    spend again) to `{"shoppers", "mae", "spearman",
    "predicted_total", "realised_total", ...}` or `{"skipped": reason}`. `interval` holds
    `uncalibrated`, `calibrated` (the list's) and `pooled` (one level for all), each
    `{"coverage", "mean_width", "buyers", "non_buyers", "groups"}` or None, and
    `calibration` (`interval_note`'s record); or `{"skipped": reason}`."""
    from cadence.models._value import fit_value, realised_spend

    started = time.perf_counter()
    o = _check_orders(orders)
    before = o[o.ordered_at < as_of]
    population = pd.Index(pd.unique(before.user_id), name="user_id").sort_values()
    fitted: Any = None
    btyd_error = None
    try:
        fitted = fit_value(before, as_of)
    except ValueError as exc:  # BTYDFitError or ValueFitError
        btyd_error = str(exc)
    out: dict[str, Any] = {
        "as_of": f"{as_of:%Y-%m-%d}",
        "data_end": f"{data_end:%Y-%m-%d}",
        "shoppers": len(population),
        "horizons": {},
    }
    for i, h in enumerate(horizons):
        report(Progress("value", f"{h}-day spend", i, len(horizons)))
        key = f"{h}d"
        end = as_of + pd.Timedelta(days=h)
        if end > data_end:
            out["horizons"][key] = {
                "status": "skipped",
                "reason": f"the {h}-day window after {as_of:%Y-%m-%d} runs to {end:%Y-%m-%d}, "
                f"past the data's end ({data_end:%Y-%m-%d})",
            }
            continue
        realised = realised_spend(o, as_of, h, data_end)
        skipped: list[str] = []
        models: dict[str, Any] = {}
        if fitted is None:
            skipped.append("bgnbd_gamma_gamma")
            models["bgnbd_gamma_gamma"] = {"skipped": btyd_error}
        else:
            models["bgnbd_gamma_gamma"] = _btyd(fitted, h, realised)
        models["cadence_value"] = _try(
            skipped, "cadence_value", _cadence, o, features, as_of, h, population, realised,
            seed, n_jobs,
        )  # fmt: skip
        models["recent_spend"] = _recent(o, as_of, h, population, realised)
        entry: dict[str, Any] = {
            "status": "ok",
            "window": f"{as_of:%Y-%m-%d}..{end:%Y-%m-%d}",
            "shoppers": len(population),
            "buyers": int((realised.reindex(population, fill_value=0.0) > 0).sum()),
            "models": models,
            "skipped_models": skipped,
        }
        if h in INTERVAL_HORIZONS:
            entry["interval"] = (
                {"skipped": btyd_error}
                if fitted is None
                else _interval(o, as_of, h, fitted, realised, seed)
            )
        out["horizons"][key] = entry
    report(Progress("value", "done", len(horizons), len(horizons)))
    out["seconds"] = time.perf_counter() - started
    return out


def workspace_value_report(
    raw: Path,
    features_dir: Path,
    *,
    as_of: pd.Timestamp | None = None,
    horizons: tuple[int, ...] = HORIZONS,
    seed: int = 0,
    n_jobs: int = 2,
    features: pd.DataFrame | None = None,
    report: Report = silent,
) -> dict[str, Any]:
    """`value_report` on a workspace's orders and feature rows (`settings.raw_dir`,
    `settings.features_dir`; `features` when the caller has read them all already). Without
    `as_of`, each horizon is judged as of its own `value_as_of`, the latest snapshot whose
    window the data holds, so a log too short for 365 days after the 90-day as-of date still
    gets a 365-day figure from an earlier one; the report's `as_of` is then the shortest
    horizon's and each horizon's `window` says its own."""
    from cadence.flows.steps import _read

    orders = _read.orders(raw, ORDER_COLUMNS)
    end = _read.data_end(raw, orders)
    if features is None:
        features = _read.feature_rows(features_dir)
    run = {"data_end": end, "seed": seed, "n_jobs": n_jobs, "report": report}
    if as_of is not None:
        return value_report(orders, features, as_of=as_of, horizons=horizons, **run)
    snaps = _read.snapshots(features_dir)
    out: dict[str, Any] | None = None
    started = time.perf_counter()
    for h in sorted(horizons):
        try:
            at = value_as_of(snaps, end, h)
        except ValueError as exc:
            if out is None:
                raise
            out["horizons"][f"{h}d"] = {"status": "skipped", "reason": str(exc)}
            continue
        one = value_report(orders, features, as_of=at, horizons=(h,), **run)
        if out is None:
            out = one
        else:
            out["horizons"].update(one["horizons"])
    assert out is not None  # horizons is never empty
    out["seconds"] = time.perf_counter() - started
    return out
