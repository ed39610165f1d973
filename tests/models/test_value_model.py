"""Cadence's value model and the customer value step: labels count only the window after the
snapshot and nothing past the as-of date, the model beats a constant where spend follows the
features, and the step reports every model beside the others, skipping a short window or a
missing snapshot with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.flows.steps.value import value_as_of, value_report
from cadence.models._value import realised_spend
from cadence.models._value_model import (
    NoTrainingRows,
    SpendModel,
    fit_spend_model,
    spend_after,
    training_rows,
)

START = pd.Timestamp("2023-01-01", tz="UTC")
AS_OF = pd.Timestamp("2024-06-30", tz="UTC")
END = AS_OF + pd.Timedelta(days=120)
DAY = pd.Timedelta(days=1)


def _shop(n: int, seed: int) -> pd.DataFrame:
    """An order log as a shop would import it: shoppers arrive over the first year, buy at
    their own rate with their own order value and leave after a while; a third buy once
    only; one order in 25 is free (amount 0)."""
    rng = np.random.default_rng(seed)
    span = (END - START).days
    first = rng.uniform(0, 365, n)
    rate = rng.gamma(1.5, 1 / 45.0, n)  # orders a day
    value = rng.gamma(3.0, 15.0, n)
    life = rng.exponential(500.0, n)
    once = rng.random(n) < 1 / 3
    users, days, amounts = [], [], []
    for u in range(n):
        t = first[u]
        while t < min(span, first[u] + life[u]):
            users.append(f"s{u:05d}")
            days.append(t)
            amounts.append(0.0 if rng.random() < 0.04 else value[u] * rng.gamma(8.0, 1 / 8.0))
            if once[u]:
                break
            t += rng.exponential(1.0 / rate[u])
    return pd.DataFrame(
        {
            "user_id": users,
            "ordered_at": START + pd.to_timedelta(np.array(days), unit="D"),
            "amount": np.round(amounts, 2),
        }
    )


def _features(orders: pd.DataFrame, snapshots) -> pd.DataFrame:
    """A few point-in-time features per (shopper with an order before t, snapshot t), and one
    column of noise: what the feature build would give, in small."""
    rng = np.random.default_rng(0)
    frames = []
    for t in snapshots:
        o = orders[orders.ordered_at < t]
        g = o.groupby("user_id")
        recent = o[o.ordered_at >= t - 90 * DAY].groupby("user_id")
        f = pd.DataFrame(
            {
                "orders_all": g.size().astype(float),
                "spend_all": g.amount.sum(),
                "days_since_first_order": (t - g.ordered_at.min()).dt.days.astype(float),
                "days_since_last_order": (t - g.ordered_at.max()).dt.days.astype(float),
            }
        )
        f["orders_90d"] = recent.size().reindex(f.index, fill_value=0).astype(float)
        f["spend_90d"] = recent.amount.sum().reindex(f.index, fill_value=0.0)
        f["noise"] = rng.normal(size=len(f))
        frames.append(f.rename_axis("user_id").reset_index().assign(snapshot_at=t))
    out = pd.concat(frames, ignore_index=True)
    return out[
        ["user_id", "snapshot_at", *(c for c in out.columns if c not in ("user_id", "snapshot_at"))]
    ]


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    orders = _shop(1500, 11)
    snaps = pd.date_range(START + 28 * DAY, AS_OF, freq="14D", tz="UTC").union([AS_OF])
    return orders, _features(orders, snaps)


@pytest.mark.unit
def test_a_label_is_the_spend_from_the_snapshot_to_the_window_end():
    t = pd.Timestamp("2024-03-01", tz="UTC")
    minute = pd.Timedelta(minutes=1)
    orders = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "a", "b"],
            "ordered_at": [t - minute, t, t + 10 * DAY, t + 30 * DAY - minute, t + 30 * DAY, t],
            "amount": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        }
    )
    rows = pd.DataFrame({"user_id": ["a", "b", "c"], "snapshot_at": [t, t, t]})
    # a: the order at t counts (features see only what came before it), the one at t + 30
    # days does not; c never ordered.
    np.testing.assert_array_equal(spend_after(rows, orders, 30), [14.0, 32.0, 0.0])
    np.testing.assert_array_equal(
        spend_after(rows, orders, 30, before=t + 10 * DAY), [2.0, 32.0, 0.0]
    )


@pytest.mark.unit
def test_training_rows_end_by_the_as_of_and_see_nothing_after_it(shop):
    orders, features = shop
    rows = training_rows(features, orders, as_of=AS_OF, horizon=90)
    assert (rows.snapshot_at + 90 * DAY <= AS_OF).all()
    assert rows.snapshot_at.nunique() > 20
    # Orders at or after the as-of date change no label...
    before = orders[orders.ordered_at < AS_OF]
    pd.testing.assert_frame_equal(rows, training_rows(features, before, as_of=AS_OF, horizon=90))
    # ...and an order a minute before it moves exactly the labels whose window holds it.
    who = rows.user_id.iloc[0]
    extra = pd.DataFrame(
        {"user_id": [who], "ordered_at": [AS_OF - pd.Timedelta(minutes=1)], "amount": [1000.0]}
    )
    moved = training_rows(features, pd.concat([orders, extra]), as_of=AS_OF, horizon=90)
    holds = (rows.user_id == who) & (rows.snapshot_at + 90 * DAY == AS_OF)
    np.testing.assert_allclose(moved.spend - rows.spend, np.where(holds, 1000.0, 0.0))
    with pytest.raises(NoTrainingRows, match="no feature snapshot has its 365-day window end"):
        training_rows(features, orders, as_of=START + 100 * DAY, horizon=365)


@pytest.mark.model
def test_the_value_model_beats_a_constant(shop):
    orders, features = shop
    model, rows = fit_spend_model(features, orders, as_of=AS_OF, horizon=90)
    at = features[features.snapshot_at == AS_OF].set_index("user_id")
    realised = realised_spend(orders, AS_OF, 90, END).reindex(at.index, fill_value=0.0)
    pred = model.predict(at)
    assert (pred >= 0).all()
    constant = np.full(len(pred), rows.spend.mean())
    mae = np.abs(pred - realised).mean()
    assert mae < 0.6 * np.abs(constant - realised).mean()
    assert pd.Series(pred).corr(pd.Series(realised.to_numpy()), method="spearman") > 0.5
    assert pred.sum() == pytest.approx(realised.sum(), rel=0.3)
    # Direction: the same shoppers with five more recent orders are worth more on average.
    busier = at.assign(orders_90d=at.orders_90d + 5, spend_90d=at.spend_90d * 2 + 200.0)
    assert model.predict(busier).mean() > 1.5 * pred.mean()


@pytest.mark.unit
def test_an_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective 'poisson'"):
        SpendModel(horizon_days=90, objective="poisson")._params()


@pytest.mark.model
def test_the_report_judges_each_horizon_that_fits_and_skips_the_rest(shop, capsys):
    orders, features = shop
    snaps = sorted(features.snapshot_at.unique())
    assert value_as_of(snaps, END, 90) == AS_OF
    report = value_report(orders, features, as_of=AS_OF, data_end=END)
    assert capsys.readouterr() == ("", "")
    assert report["as_of"] == "2024-06-30" and report["data_end"] == "2024-10-28"
    assert report["shoppers"] == orders[orders.ordered_at < AS_OF].user_id.nunique()
    long = report["horizons"]["365d"]
    assert long["status"] == "skipped"
    assert "runs to 2025-06-30, past the data's end (2024-10-28)" in long["reason"]
    h = report["horizons"]["90d"]
    assert h["status"] == "ok" and h["window"] == "2024-06-30..2024-09-28"
    assert h["skipped_models"] == []
    assert set(h["models"]) == {"bgnbd_gamma_gamma", "cadence_value", "recent_spend"}
    realised = realised_spend(orders, AS_OF, 90, END).sum()
    for m in h["models"].values():
        assert m["shoppers"] == report["shoppers"]
        assert m["realised_total"] == pytest.approx(realised)
        assert m["mae"] > 0 and -1 <= m["spearman"] <= 1
    ours, rule = h["models"]["cadence_value"], h["models"]["recent_spend"]
    assert ours["mae"] < rule["mae"]
    # The last snapshot trained on is the last whose 90 days end by the as-of date.
    last = max(t for t in snaps if t + 90 * DAY <= AS_OF)
    assert ours["training_window"] == f"{snaps[0]:%Y-%m-%d}..{last:%Y-%m-%d}"
    interval = h["interval"]
    assert interval["calibration"]["calibrated"] is True
    for name in ("uncalibrated", "calibrated", "pooled"):
        assert 0 <= interval[name]["coverage"] <= 1
        assert set(interval[name]) == {"coverage", "mean_width", "buyers", "non_buyers", "groups"}
    groups = interval["calibrated"]["groups"].values()
    assert sum(g["shoppers"] for g in groups) == report["shoppers"]


@pytest.mark.model
def test_the_report_says_why_a_model_is_missing(shop):
    orders, features = shop
    # No snapshot at the as-of date: Cadence's model cannot score, the others still report.
    earlier = features[features.snapshot_at < AS_OF]
    report = value_report(orders, earlier, as_of=AS_OF, data_end=END, horizons=(90,))
    h = report["horizons"]["90d"]
    assert h["skipped_models"] == ["cadence_value"]
    assert "no snapshot at the as-of date 2024-06-30" in h["models"]["cadence_value"]["skipped"]
    assert h["models"]["bgnbd_gamma_gamma"]["mae"] > 0
    # Nobody bought twice: Gamma-Gamma has nothing to fit, and its interval goes with it.
    once = orders.drop_duplicates("user_id")
    report = value_report(once, features, as_of=AS_OF, data_end=END, horizons=(90,))
    h = report["horizons"]["90d"]
    assert "bgnbd_gamma_gamma" in h["skipped_models"]
    assert "skipped" in h["interval"]
    assert h["models"]["recent_spend"]["shoppers"] == report["shoppers"]
    with pytest.raises(ValueError, match="orders: missing column"):
        value_report(once.drop(columns="amount"), features, as_of=AS_OF, data_end=END)
