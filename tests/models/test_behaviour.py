"""Behaviour of a trained repurchase model: a direction (a replenishment falling due raises the
probability) and an invariance (sensitive attributes cannot move a score)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cadence.features._orders import CYCLE_CATEGORIES
from cadence.flows.steps._read import feature_rows
from cadence.ingest import SENSITIVE_COLUMNS
from cadence.models._train import Trained, fit, prepare

pytestmark = pytest.mark.model

HORIZON = 30


@pytest.fixture(scope="module")
def trained(model_home) -> tuple[Trained, pd.DataFrame]:
    """The model as tests/models/test_train.py trains it (the timing model kept small: these
    tests read only the probability), and its test rows."""
    frame = feature_rows(model_home / "features")
    orders = pd.read_parquet(model_home / "raw/orders.parquet", columns=["user_id", "ordered_at"])
    end = pd.Timestamp(json.loads((model_home / "raw/manifest.json").read_text())["end"])
    feats = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    rows, split = prepare(frame, orders, end=end, horizon_days=HORIZON, test=4, calibrate=4)
    model = fit(rows, feats, split, propensity={"n_estimators": 120}, timing={"n_estimators": 10})
    return model, rows[rows.slice == "test"].reset_index(drop=True)


def _bought(frame: pd.DataFrame, category: str, days_ago: pd.Series | float) -> pd.DataFrame:
    """The rows as if the shopper's last purchase of `category` was `days_ago` days before the
    snapshot: that category's recency and dueness, and the last order's recency, move with it."""
    out = frame.copy()
    out[f"{category}_days_since"] = days_ago
    out[f"{category}_dueness"] = days_ago / frame[f"{category}_gap_mean"]
    out["days_since_last_order"] = np.minimum(frame.days_since_last_order, days_ago)
    return out


def test_a_replenishment_falling_due_raises_the_probability(trained):
    """For shoppers with a replenishment cycle longer than the horizon, the same row with that
    purchase due in 2 days must score higher than with it bought yesterday (next due a cycle
    later, past the horizon). Cycles shorter than the horizon are left out: bought yesterday,
    such a shopper is due again inside the horizon anyway (formula every 30 days, diapers every
    20, coffee every 25), so no direction is owed there."""
    model, test = trained
    due, fresh = [], []
    for c in CYCLE_CATEGORIES:
        rows = test[test[f"{c}_gap_mean"] >= HORIZON + 5]
        if rows.empty:
            continue
        due.append(model.predict(_bought(rows, c, rows[f"{c}_gap_mean"] - 2)).probability)
        fresh.append(model.predict(_bought(rows, c, 1.0)).probability)
    p_due, p_fresh = np.concatenate(due), np.concatenate(fresh)
    assert len(p_due) > 300  # pet food, skincare and household buyers, mostly
    # On the world with regular cycles (gap CV about 0.1) the mean moved by 0.26; with real
    # shops' noise (a gap CV of 0.35-0.5 in these categories, shoppers' own cycles spread 30%)
    # it moved from 0.51 to 0.60; once shoppers also skip cycles, buy elsewhere and lapse,
    # being due says less again, and it moved from 0.35 to 0.38.
    assert p_due.mean() > p_fresh.mean() + 0.015, (p_due.mean(), p_fresh.mean())
    # Individually: the calibration chosen (beta, on both seeds) keeps the booster's ranking, so
    # no pair ties on a plateau as under isotonic calibration (8-10% of them did), and about
    # one in ten goes the other way where the rest of the row dominates. Seeds 0 and 1 gave
    # 89-90% strictly higher on the world with steady shoppers; with skipped cycles and lapses
    # in the world, 60% on this small one: more than the half a model without the direction
    # gets, with a little room for the seed.
    assert (p_due > p_fresh).mean() >= 0.55, (p_due > p_fresh).mean()


def test_no_model_input_is_or_derives_from_a_sensitive_attribute(trained):
    model, test = trained
    inputs = model.inputs(test.head(5)).columns
    assert list(inputs[: len(model.features)]) == model.features
    named = [c for c in inputs if any(s in c for s in SENSITIVE_COLUMNS)]
    assert not named
    # The feature build has none to give (tests/features/test_engine.py shuffles them in the raw
    # users table and finds every feature unchanged).
    assert not set(SENSITIVE_COLUMNS) & set(test.columns)


def test_scores_do_not_move_with_sensitive_attributes(trained, model_home):
    """A frame that carries the shoppers' gender and age band (as a join to the users table
    would) scores the same whatever those columns hold: shuffled, or all set to one value."""
    model, test = trained
    users = pd.read_parquet(
        model_home / "raw/users.parquet", columns=["user_id", *SENSITIVE_COLUMNS]
    )
    assert users[list(SENSITIVE_COLUMNS)].nunique().min() > 1  # there is something to shuffle
    frame = test.merge(users, on="user_id", how="left", validate="many_to_one")
    base = model.predict(frame)
    rng = np.random.default_rng(0)
    for column in SENSITIVE_COLUMNS:
        shuffled = frame.assign(**{column: rng.permutation(frame[column].to_numpy())})
        assert not shuffled[column].equals(frame[column])
        pd.testing.assert_frame_equal(model.predict(shuffled), base, check_exact=True)
        one = frame.assign(**{column: frame[column].iloc[0]})
        pd.testing.assert_frame_equal(model.predict(one), base, check_exact=True)
