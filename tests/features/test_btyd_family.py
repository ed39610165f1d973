"""The btyd family: BG/NBD fitted per snapshot on that snapshot's rows, nulls where it cannot be."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from cadence.features._btyd import BGNBDParams, expected_orders, fit_bgnbd, p_alive, simulate_bgnbd
from cadence.features._orders import BTYD, BTYD_MIN_SHOPPERS, BTYD_PENALIZER

pytestmark = pytest.mark.unit

S1 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
S2 = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)


def _rows(snapshot: dt.datetime, n: int, seed: int, *, repeat: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    t = rng.uniform(5, 300, n)
    x, tx = simulate_bgnbd(BGNBDParams(0.5, 10.0, 0.8, 2.5), t, rng)
    if not repeat:
        x, tx = np.zeros(n), np.zeros(n)
    return {
        "user_id": np.arange(n),
        "snapshot_at": [snapshot] * n,
        "order_days_all": (x + 1).astype(np.int64),
        "days_since_first_order": t,
        "days_since_last_order": t - tx,
    }


def _table(*parts: dict) -> pa.Table:
    cols = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return pa.table(
        {
            "user_id": pa.array(cols["user_id"], pa.int64()),
            "snapshot_at": pa.array(cols["snapshot_at"], pa.timestamp("us", tz="UTC")),
            "order_days_all": pa.array(cols["order_days_all"], pa.int64()),
            "days_since_first_order": pa.array(cols["days_since_first_order"], pa.float64()),
            "days_since_last_order": pa.array(cols["days_since_last_order"], pa.float64()),
        }
    )


def test_each_snapshot_is_fitted_on_its_own_rows_only():
    a, b = _rows(S1, 400, 1), _rows(S2, 300, 2)
    out = BTYD.fitted(_table(a, b))
    assert set(out) == {f.name for f in BTYD.features}
    x = a["order_days_all"] - 1.0
    t = a["days_since_first_order"]
    tx = t - a["days_since_last_order"]
    params = fit_bgnbd(x, tx, t, penalizer=BTYD_PENALIZER).params
    np.testing.assert_allclose(out["btyd_p_alive"][:400], p_alive(params, x, tx, t), rtol=1e-12)
    np.testing.assert_allclose(
        out["btyd_orders_30d"][:400], expected_orders(params, 30, x, tx, t), rtol=1e-12
    )
    # Other rows of the same snapshot move its values; another snapshot's rows do not.
    alone = BTYD.fitted(_table(a))
    np.testing.assert_array_equal(out["btyd_p_alive"][:400], alone["btyd_p_alive"])
    moved = BTYD.fitted(_table(a, _rows(S1, 200, 3)))
    assert not np.array_equal(moved["btyd_p_alive"][:400], alone["btyd_p_alive"])
    for name in out:
        assert np.isfinite(out[name]).all(), name
    assert (out["btyd_orders_7d"] <= out["btyd_orders_30d"]).all()
    assert (out["btyd_orders_30d"] <= out["btyd_orders_90d"]).all()


def test_row_order_does_not_matter():
    table = _table(_rows(S1, 300, 4), _rows(S2, 300, 5))
    order = np.random.default_rng(0).permutation(table.num_rows)
    out = BTYD.fitted(table)
    shuffled = BTYD.fitted(table.take(pa.array(order)))
    for name in out:
        np.testing.assert_array_equal(shuffled[name], out[name][order])


def test_a_snapshot_too_small_or_without_repeats_gets_nulls():
    small = _rows(S1, BTYD_MIN_SHOPPERS - 1, 6)
    silent = _rows(S2, 300, 7, repeat=False)
    out = BTYD.fitted(_table(small, silent))
    for name in out:
        assert np.isnan(out[name]).all(), name


def test_a_shopper_without_orders_gets_nulls_and_the_rest_do_not():
    a = _rows(S1, 300, 8)
    a["order_days_all"][:5] = 0
    a["days_since_first_order"][:5] = np.nan
    a["days_since_last_order"][:5] = np.nan
    out = BTYD.fitted(_table(a))
    assert np.isnan(out["btyd_p_alive"][:5]).all()
    assert np.isfinite(out["btyd_p_alive"][5:]).all()
    assert (out["btyd_p_alive"][5:] <= 1).all() and (out["btyd_days_to_next"][5:] > 0).all()
