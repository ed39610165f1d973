"""The scored list marketing works from: who, how likely, when, when to contact, and why.

A list is one row per eligible shopper, most likely first. Its probability column names the
horizon (`p_order_30d`); each row has a band and a percentile rank within the list, the
expected next order date with its 80% interval, a contact date where the band suggests
contact, and the three inputs that moved the score most, in words. The same rows go to
Parquet for analysts and Feast (each driver's feature, value and SHAP contribution too, `as_of`
as a timestamp) and to CSV for a spreadsheet (words, every date YYYY-MM-DD); `describe` writes
the data dictionary that goes beside them (README.md and schema.json).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cadence.models._train import Trained

DRIVERS = 3
BANDS = ("high", "medium", "low")
DATES = ("contact_date", "expected_next_order_date", "next_order_date_low", "next_order_date_high")
VALUE = ("expected_spend_90d", "expected_spend_90d_low", "expected_spend_90d_high")


def probability_column(horizon_days: int) -> str:
    """The probability's column, named for its horizon: `p_order_30d`."""
    return f"p_order_{horizon_days}d"


def pick_snapshot(
    available: list[pd.Timestamp], as_of: pd.Timestamp | None, every_days: int
) -> pd.Timestamp:
    """The snapshot to score from: the latest at or before `as_of` (default: the latest of
    all), no older than the grid's step."""
    if not available:
        raise ValueError("the feature build holds no snapshots")
    if as_of is None:
        return max(available)
    before = [s for s in available if s <= as_of]
    if not before or as_of - max(before) >= pd.Timedelta(days=every_days):
        raise ValueError(
            f"no features as of {as_of.isoformat()}: snapshots run from "
            f"{min(available).date()} to {max(available).date()} every {every_days} days; "
            "pick a date they cover, or rebuild the features on a grid that covers it"
        )
    return max(before)


def eligible(
    frame: pd.DataFrame, *, active_days: int, withdrawn: set[str] | None
) -> tuple[pd.DataFrame, int]:
    """The shoppers a list may hold: active (an order within `active_days` before the
    snapshot) and not among those who withdrew consent to profiling or to being contacted.
    Returns them and how many active shoppers consent left out."""
    active = frame[frame.days_since_last_order.to_numpy(float) <= active_days]
    if not withdrawn:
        return active.reset_index(drop=True), 0
    keep = ~active.user_id.isin(withdrawn)
    return active[keep].reset_index(drop=True), int((~keep).sum())


def percentiles(p: np.ndarray) -> np.ndarray:
    """Each score's rank within the list, 1-100: the share of the list scoring at or below it,
    rounded up, so the most likely shopper is 100 and equal scores share a percentile."""
    n = len(p)
    at_or_below = pd.Series(p).rank(method="max").to_numpy(np.int64)
    return (100 * at_or_below + n - 1) // max(n, 1)


# --- drivers in words -------------------------------------------------------------------------


@cache
def _catalogue() -> dict[str, tuple[str, str]]:
    """Feature name -> (description, dtype), from the feature catalogue."""
    from cadence.features.catalogue import user_features

    return {f.name: (f.description, f.dtype) for f in user_features()}


def _words(text: str) -> str:
    return text.replace("_", " ")


def _number(value: float) -> str:
    """Up to 2 decimals, without trailing zeros: 1.5, 0.33, 2."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _days(value: float) -> str:
    """Whole days; a fraction of a day reads `under 1` rather than a misleading 0."""
    if 0 < abs(value) < 1:
        return "under 1"
    return str(abs(round(value)))


def _in_days(value: float) -> str:
    n = abs(round(value))
    return f"{n} day" if n == 1 else f"{n} days"


def _due(what: str, value: float, *, by: str = "") -> str:
    """`pet food due in 2 days`, `... due today`, `... overdue by 3 days`."""
    if round(value) == 0:
        return f"{what} due today{by}"
    if value > 0:
        return f"{what} due in {_in_days(value)}{by}"
    return f"{what} overdue by {_in_days(value)}{by}"


def describe_input(name: str, value: float) -> str:
    """One model input and a shopper's value of it, as a marketer reads it: the catalogue's
    description and the value, counts whole, money to 2 decimals, days whole, shares in
    percent, yes/no flags folded into the sentence, due dates as `due in 2 days`."""
    if name.endswith("_due_in_days"):
        what, by = {
            "next": ("next replenishment", ""),
            "gap": ("next order", ", by the usual gap between orders"),
        }.get(name.removesuffix("_due_in_days"), (_words(name.removesuffix("_due_in_days")), ""))
        return f"{what}{by.replace(',', '')}: none" if pd.isna(value) else _due(what, value, by=by)
    description, dtype = _catalogue().get(name, (_words(name), "float64"))
    what = _words(description)
    if pd.isna(value):
        return f"{what}: none"
    if dtype == "int64" and " is " in what and value in (0, 1):
        return what if value == 1 else what.replace(" is ", " is not ", 1)
    if re.search(r"_share|_rate|abandonment", name):
        return f"{what}: {round(100 * value)}%"
    if dtype == "int64" or name.endswith("_count"):
        return f"{what}: {round(value)}"
    if name.startswith("trend_"):
        return f"{what}: {_number(value)}"
    if re.search(r"spend|value|cost|refund|price", name):
        return f"{what}: {value:.2f}"
    if "days" in name or re.search(r"gap_(mean|median|std|min|max|last)$", name):
        return f"{what}: {'-' if value <= -1 else ''}{_days(value)}"
    return f"{what}: {_number(value)}"


def describe_driver(name: str, value: float, contribution: float) -> str:
    """`<input>: <value> (raises)`: the input in words and the way it moved this shopper's
    score; empty for an input that did not move it."""
    if contribution == 0 or not math.isfinite(contribution):
        return ""
    return f"{describe_input(name, value)} ({'raises' if contribution > 0 else 'lowers'})"


# --- the list ---------------------------------------------------------------------------------


def score_frame(
    trained: Trained,
    frame: pd.DataFrame,
    *,
    snapshot: pd.Timestamp,
    lead_days: int,
    medium: float,
    high: float,
    model_version: str,
    contact_bands: Sequence[str] = ("high", "medium"),
    exact_drivers: bool = True,
    value: pd.DataFrame | None = None,
    offer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per user in `frame`, most likely first (ties by user id): the probability of an
    order within the horizon, its band and percentile, the contact date (only in
    `contact_bands`), the expected next order date and interval, the three inputs that moved the
    score most (TreeSHAP, or its fast approximation with `exact_drivers=False`) in words and as
    feature, value and contribution, the model version and the as-of time. `value` (indexed by
    user id, the `VALUE` columns, from `cadence.models._value.expected_spend`) gives the
    expected spend; without it, or for a user it lacks, those columns are empty. `offer`, given
    the probabilities, says who gets a contact date in place of the bands (a fairness-mitigated
    model's own decisions)."""
    X = trained.inputs(frame)
    dm = trained.matrix(X)
    pred = trained.predict_inputs(X, dm)
    p = pred.probability.to_numpy()
    day = np.datetime64(snapshot.floor("D").tz_localize(None), "D")

    def on(days: np.ndarray) -> np.ndarray:
        return day + np.round(days).astype("timedelta64[D]")

    band = np.select([p >= high, p >= medium], ["high", "medium"], "low")
    expected_days = pred.expected_days.to_numpy()
    # Never in the past: a contact already due is due on the as-of day.
    contact = on(np.maximum(np.round(expected_days) - lead_days, 0))
    out = pd.DataFrame(
        {
            "user_id": frame.user_id.to_numpy(),
            probability_column(trained.horizon_days): p,
            "percentile": percentiles(p),
            "band": band,
            "contact_date": np.where(
                np.isin(band, list(contact_bands)) if offer is None else offer(p),
                contact,
                np.datetime64("NaT"),
            ),
            "expected_next_order_date": on(expected_days),
            "next_order_date_low": on(pred.days_low.to_numpy()),
            "next_order_date_high": on(pred.days_high.to_numpy()),
        }
    )
    spend = pd.DataFrame(index=frame.user_id, columns=list(VALUE), dtype=float)
    if value is not None:
        spend = value.reindex(frame.user_id)[list(VALUE)].astype(float)
    for col in VALUE:
        out[col] = spend[col].to_numpy()
    contrib = trained.contributions(X, dm, exact=exact_drivers)
    # The three largest contributions by size, largest first (a partition, then a sort of 3).
    size = np.abs(contrib)
    k = min(DRIVERS, size.shape[1])
    top = np.argpartition(-size, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(
        top, np.argsort(-np.take_along_axis(size, top, 1), axis=1, kind="stable"), 1
    )
    names = np.asarray(X.columns)
    values = X.to_numpy(float)
    analyst = {}
    for i in range(k):
        shap = np.take_along_axis(contrib, top[:, i : i + 1], 1)[:, 0]
        # An input that did not move the score is no driver (BG/NBD's model reads one input).
        moved = shap != 0
        feature = np.where(moved, names[top[:, i]], None)
        value = np.where(moved, np.take_along_axis(values, top[:, i : i + 1], 1)[:, 0], np.nan)
        out[f"driver_{i + 1}"] = [
            describe_driver(*row) for row in zip(feature, value, shap, strict=True)
        ]
        analyst |= {
            f"driver_{i + 1}_feature": feature,
            f"driver_{i + 1}_value": value,
            f"driver_{i + 1}_shap": shap,
        }
    out["model_version"] = model_version
    out["as_of"] = snapshot
    out = out.assign(**analyst)
    order = np.lexsort((out.user_id.to_numpy(str), -p))
    return out.iloc[order].reset_index(drop=True)


def summary(scored: pd.DataFrame) -> dict[str, object]:
    """Rows, rows per band, orders expected within the horizon (the probabilities' sum), and
    how many probabilities are exactly 0 (only an isotonic calibration gives those)."""
    p = scored[[c for c in scored if c.startswith("p_order_")][0]]
    counts = scored.band.value_counts()
    return {
        "users": len(scored),
        "bands": {b: int(counts.get(b, 0)) for b in BANDS},
        "expected_orders_in_horizon": float(p.sum()),
        "exact_zeros": int((p == 0).sum()),
    }


# --- files beside the list --------------------------------------------------------------------


@dataclass(frozen=True)
class ListInfo:
    """What the data dictionary says about a list besides its columns."""

    model_name: str
    model_version: str  # the registered model's version number
    horizon_days: int
    as_of: pd.Timestamp
    written_at: dt.datetime
    calibration: str
    medium: float
    high: float
    contact_bands: tuple[str, ...]
    lead_days: int
    active_days: int
    withdrawn: int | None  # left out for consent; None: the data has no consent log
    drivers: str  # "treeshap" or "approximate"
    feature_build: str  # the feature build's fingerprint ("" when it recorded none)
    features_built_at: dt.datetime | None
    # Why the expected spend is empty (the fit failed), or None when it was estimated.
    value_error: str | None = None
    # The propensity: "xgboost" (the hybrid) or "btyd" (BG/NBD, when the hybrid did not beat
    # it on the calibration slice), and the training run's reason.
    propensity: str = "xgboost"
    selection_reason: str | None = None
    # How the expected spend's 80% range was calibrated (`models._value.interval_note`).
    value_interval: dict | None = None
    # Who gets a contact date when a fairness post-processor decides, in words; None: bands.
    offers_by: str | None = None


def _columns(info: ListInfo) -> dict[str, str]:
    """Every column's meaning, in list order."""
    h = info.horizon_days
    contact = " or ".join(info.contact_bands) or "no"
    meanings = {
        "user_id": "the shopper's id, exactly as in the shop's data",
        probability_column(h): f"probability (0-1) that the shopper orders within {h} days "
        "after the as-of date",
        "percentile": "rank within this list, 1-100: the share of the list with this "
        "probability or lower, rounded up (100 = most likely; equal probabilities share one)",
        "band": f"high (probability {info.high:g} or more), medium ({info.medium:g} to "
        f"below {info.high:g}) or low (below {info.medium:g})",
        "contact_date": f"suggested contact day, {info.lead_days} days before the expected "
        f"next order and never before the as-of date; given for {contact} band shoppers only, "
        "empty for the others",
        "expected_next_order_date": "the day the shopper is expected to order next, if they "
        "order again",
        "next_order_date_low": "the early end of an 80% range for that day",
        "next_order_date_high": "the late end of an 80% range for that day",
        "expected_spend_90d": "expected spend in the 90 days after the as-of date, in the "
        "order log's currency: BG/NBD's expected orders times Gamma-Gamma's expected order "
        "value, both fitted on the orders before the as-of date; a shopper with a single "
        "order day gets the population's mean order value; empty if the fit failed (see "
        "README.md)",
        "expected_spend_90d_low": "the low end of an 80% range for that spend (often 0: many "
        "shoppers may not order at all)",
        "expected_spend_90d_high": "the high end of an 80% range for that spend",
    }
    for i in range(1, DRIVERS + 1):
        nth = {1: "most", 2: "second most", 3: "third most"}[i]
        meanings[f"driver_{i}"] = (
            f"the input that moved this shopper's probability {nth}, in words, with the "
            "shopper's value and whether it raises or lowers the probability"
        )
    meanings |= {
        "model_version": "the registered model and version that scored the list",
        "as_of": "the date the features describe; the horizon counts from it",
    }
    for i in range(1, DRIVERS + 1):
        meanings |= {
            f"driver_{i}_feature": f"driver {i}'s model input (feature name)",
            f"driver_{i}_value": f"the shopper's value of driver {i}'s input (empty: none)",
            f"driver_{i}_shap": f"driver {i}'s contribution to the score in log-odds "
            "(SHAP; above 0 raises the probability)",
        }
    return meanings


def tables(scored: pd.DataFrame) -> tuple[pa.Table, pa.Table]:
    """The Parquet table (dates as dates, `as_of` a UTC timestamp) and the CSV's (words only,
    every date, `as_of` included, a YYYY-MM-DD date)."""
    table = pa.Table.from_pandas(scored, preserve_index=False)
    for col in DATES:
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, table[col].cast(pa.date32()))
    i = table.schema.get_field_index("as_of")
    table = table.set_column(i, "as_of", table["as_of"].cast(pa.timestamp("us", tz="UTC")))
    analyst = [c for c in table.column_names if re.fullmatch(r"driver_\d+_(feature|value|shap)", c)]
    csv = table.drop_columns(analyst)
    # Four decimals read well in a spreadsheet, except where rounding would show a certainty
    # (0 or 1) the model never gave; the Parquet file keeps full precision.
    p = next(c for c in csv.column_names if c.startswith("p_order_"))
    exact = csv[p].to_numpy()
    shown = np.round(exact, 4)
    shown = np.where((shown == 0) | (shown == 1), exact, shown)
    csv = csv.set_column(csv.schema.get_field_index(p), p, pa.array(shown, pa.float64()))
    for col in VALUE:  # money: 2 decimals
        i = csv.schema.get_field_index(col)
        csv = csv.set_column(i, col, pa.array(np.round(scored[col].to_numpy(float), 2)))
    i = csv.schema.get_field_index("as_of")
    # The as-of time is a snapshot at midnight UTC: its date in UTC is the as-of date.
    as_of = pa.array(scored.as_of.dt.tz_convert("UTC").dt.date.to_numpy(), pa.date32())
    return table, csv.set_column(i, "as_of", as_of)


def describe(parquet: pa.Table, csv: pa.Table, info: ListInfo) -> tuple[str, dict]:
    """The list's README.md (a data dictionary in words) and schema.json (the same, for
    machines)."""
    meanings = _columns(info)
    rows = parquet.num_rows
    col = probability_column(info.horizon_days)
    bands = _band_counts(parquet["band"])
    written = info.written_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    schema = {
        "model": f"{info.model_name}/{info.model_version}",
        "model_name": info.model_name,
        "model_version": info.model_version,
        "horizon_days": info.horizon_days,
        "as_of": f"{info.as_of:%Y-%m-%d}",
        "written_at": info.written_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "rows": rows,
        "probability_column": col,
        "calibration": info.calibration,
        "propensity": info.propensity,
        "selection_reason": info.selection_reason,
        "bands": {"medium": info.medium, "high": info.high, "rows": bands},
        "contact_bands": list(info.contact_bands),
        "offers_by": info.offers_by,
        "lead_days": info.lead_days,
        "drivers": info.drivers,
        "feature_build": info.feature_build,
        "features_built_at": info.features_built_at.astimezone(dt.UTC).isoformat()
        if info.features_built_at
        else None,
        "date_format": "YYYY-MM-DD",
        "expected_spend": {
            "method": "bgnbd_x_gamma_gamma",
            "horizon_days": 90,
            "interval": 0.8,
            "interval_calibration": info.value_interval,
            "error": info.value_error,
        },
        "feast": {"entity_key": "user_id", "event_timestamp": "as_of", "file": "scores.parquet"},
        "files": {
            name: [
                {"name": f.name, "type": str(f.type), "description": meanings[f.name]}
                for f in table.schema
            ]
            for name, table in (("scores.csv", csv), ("scores.parquet", parquet))
        },
    }
    consent = (
        "the data has no consent log, so nobody was left out for consent"
        if info.withdrawn is None
        else f"{info.withdrawn:,} who withdrew consent to profiling or contact are left out"
    )
    zeros = int((parquet[col].to_numpy() == 0).sum())
    calibration = {
        "platt": "Platt scaling (a logistic curve on the model's log-odds)",
        "beta": "beta calibration (a logistic curve on the log of the model's score and of "
        "its complement)",
        "isotonic": "isotonic regression (a rising step curve, interpolated)",
    }.get(info.calibration, info.calibration)
    build = info.feature_build[:12] or "not recorded"
    if info.features_built_at:
        build += f", built {info.features_built_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    lines = [
        f"# Repurchase list: {info.model_name} version {info.model_version}, "
        f"as of {info.as_of:%Y-%m-%d}",
        "",
        f"Who is likely to order again within {info.horizon_days} days after "
        f"{info.as_of:%Y-%m-%d}, how likely, when, when to contact them, and why. "
        f"Written {written}; never overwritten (a new run writes a new folder beside this "
        "one, and `latest` points at the newest).",
        "",
        f"- Model: `models:/{info.model_name}/{info.model_version}`, horizon "
        f"{info.horizon_days} days; {_propensity_words(info)}; probabilities calibrated by "
        f"{calibration}, chosen on the calibration slice by cross-validated log loss.",
        f"- As of: {info.as_of:%Y-%m-%d} (the feature snapshot scored).",
        f"- Rows: {rows:,} active shoppers (an order within {info.active_days} days before "
        f"the as-of date), most likely first; {consent}.",
        f"- Feature build: {build}.",
        f"- Bands: high from {info.high:g} ({bands['high']:,} rows), medium from "
        f"{info.medium:g} to below {info.high:g} ({bands['medium']:,}), low below "
        f"{info.medium:g} ({bands['low']:,}).",
        (
            f"- Contact dates: for {' and '.join(info.contact_bands) or 'no'} band shoppers, "
            if info.offers_by is None
            else f"- Contact dates: for the shoppers {info.offers_by} offers to, "
        )
        + f"{info.lead_days} days before their expected next order date (never before the "
        "as-of date); empty for the rest.",
        "- Dates: every date in scores.csv reads YYYY-MM-DD.",
        _value_line(info),
    ]
    if zeros:
        lines.append(
            f"- {zeros:,} shoppers have a probability of exactly 0: the isotonic calibration "
            "found no buyer among the calibration shoppers the model scored that low. They "
            "share the lowest percentile; their order among themselves is not known."
        )
    lines += [
        "",
        "## Files",
        "",
        "- `scores.csv`: the list for a spreadsheet: drivers in words, dates as YYYY-MM-DD.",
        "- `scores.parquet`: the same rows for analysts, plus each driver's feature name, the "
        "shopper's value and its SHAP contribution; `as_of` is a UTC timestamp there. Feast "
        "reads this file: `user_id` is the entity key, `as_of` the event timestamp.",
        "- `schema.json`: every column of both files with its type and meaning, and the facts "
        "above, for machines.",
        "",
        "## Columns",
        "",
        "| column | in | type (Parquet) | meaning |",
        "|---|---|---|---|",
    ]
    in_csv = set(csv.column_names)
    for f in parquet.schema:
        where = "both" if f.name in in_csv else "Parquet"
        lines.append(f"| `{f.name}` | {where} | {f.type} | {meanings[f.name]} |")
    method = "exact TreeSHAP" if info.drivers == "treeshap" else "XGBoost's fast approximation"
    which = (
        "Each shopper's three drivers are the model inputs that moved their probability most "
        f"({method} contributions), largest first."
    )
    if info.propensity == "btyd":
        which = (
            "This model reads one input, BG/NBD's expected orders in the horizon, so each "
            "shopper has one driver (its exact SHAP value: the log-odds against the "
            "calibration shoppers' mean) and the second and third are empty."
        )
    lines += [
        "",
        "## How drivers read",
        "",
        f"{which} Each reads `what: value (raises)`: the "
        "input as the feature catalogue describes it, the shopper's value, and whether that "
        "value raised or lowered this shopper's probability compared with the average "
        "shopper. Counts are whole numbers, money has 2 decimals, days are whole days, shares "
        "are percentages, and `none` means the shopper has no value (never bought the "
        "category, say). Replenishments read `pet food due in 2 days` or `coffee overdue by "
        "3 days`, from the shopper's own rhythm. A yes/no input is folded into the sentence "
        "(`main device is ios`, `membership level is not vip`).",
        "",
    ]
    return "\n".join(lines), schema


def _propensity_words(info: ListInfo) -> str:
    if info.propensity == "btyd":
        why = info.selection_reason or "the XGBoost hybrid did not beat it on the calibration slice"
        return f"the probability is BG/NBD's ({why})"
    return "the probability is the XGBoost model's (BTYD quantities among its inputs)"


def _value_line(info: ListInfo) -> str:
    if info.value_error is not None:
        return (
            "- Expected spend: empty for every shopper; it could not be estimated from this "
            f"order log: {info.value_error}."
        )
    return (
        "- Expected spend (`expected_spend_90d`): the spend expected in the 90 days after the "
        "as-of date, in the order log's currency, 2 decimals in scores.csv. It is BG/NBD's "
        "expected number of order days times Gamma-Gamma's expected spend per order day, both "
        "fitted on the orders before the as-of date; the Gamma-Gamma value is a blend of the "
        "shopper's own mean repeat order value and the population's, and a shopper with a "
        "single order day gets the population's mean. Its 80% range (`_low`, `_high`) is "
        "simulated: alive with BG/NBD's probability, orders at a rate drawn from the "
        "shopper's posterior over the whole 90 days (drop-out within them ignored), each "
        f"order's value drawn from the Gamma-Gamma posterior. {_interval_words(info)} It is "
        "a separate model from the probability column and need not agree with it."
    )


def _interval_words(info: ListInfo) -> str:
    note = info.value_interval or {}
    if not note.get("calibrated"):
        why = note.get("note", "no calibration was recorded")
        return f"The range is the simulation's own 10th to 90th percentile, uncalibrated ({why})."
    levels = ", ".join(f"{g}: {lv:.0%}" for g, lv in note["group_levels"].items())
    return (
        "The simulation alone runs wide, so the range's level is calibrated (split conformal) "
        f"on the {note['horizon_days']} days that ended at the as-of date, with the models "
        f"fitted as of {note['calibration_as_of']}: each group of shoppers, by their simulated "
        "chance of any spend, gets the level that held 80% of its realised spend there "
        f"({levels}). Most shoppers spend nothing in 90 days; a range that holds 0 covers them "
        "at any level."
    )


def _band_counts(band: pa.ChunkedArray) -> dict[str, int]:
    counts = pd.Series(band.to_numpy(zero_copy_only=False)).value_counts()
    return {b: int(counts.get(b, 0)) for b in BANDS}


def write_list(scored: pd.DataFrame, folder: Path, info: ListInfo) -> None:
    """The list as Parquet and CSV, with its README.md and schema.json, into `folder`."""
    parquet, csv = tables(scored)
    readme, schema = describe(parquet, csv, info)
    pq.write_table(parquet, folder / "scores.parquet", compression="zstd")
    pacsv.write_csv(csv, folder / "scores.csv")
    (folder / "README.md").write_text(readme, encoding="utf-8")
    (folder / "schema.json").write_text(json.dumps(schema, indent=1) + "\n", encoding="utf-8")
