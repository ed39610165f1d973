"""The regional demand forecast and the transfers it proposes, on data built here."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from cadence.models._route_forecast import (
    ForecastConf,
    TransferConf,
    errors,
    forecast,
    naive,
    transfers,
)
from cadence.models._route_inputs import Network

pytestmark = pytest.mark.unit

START = dt.date(2025, 1, 6)  # a Monday


def _daily(days: int = 140, weekend: float = 3.0) -> pd.DataFrame:
    """Two regions, one SKU each; weekends `weekend` times the weekday demand."""
    rows = []
    for i in range(days):
        d = START + dt.timedelta(days=i)
        k = weekend if d.weekday() >= 5 else 1.0
        rows.append((d, "east", "SKU-A", 10 * k))
        rows.append((d, "west", "SKU-B", 2 * k))
    return pd.DataFrame(rows, columns=["date", "region", "sku", "units"])


def test_forecast_follows_the_weekday_shape_and_beats_last_weeks_mean():
    daily = _daily()
    conf = ForecastConf(horizon_days=3, window_days=28, season_days=84)
    friday = START + dt.timedelta(days=109)  # Fri, Sat, Sun ahead
    assert friday.weekday() == 4
    f = forecast(daily, friday, conf).set_index(["region", "sku"]).units
    assert f[("east", "SKU-A")] == pytest.approx(10 + 30 + 30, rel=1e-9)
    assert f[("west", "SKU-B")] == pytest.approx(2 + 6 + 6, rel=1e-9)
    n = naive(daily, friday, 3).set_index(["region", "sku"]).units
    assert n[("east", "SKU-A")] == pytest.approx(3 * (5 * 10 + 2 * 30) / 7)
    origins = [START + dt.timedelta(days=100 + i) for i in range(7)]
    e = errors(daily, origins, conf)
    assert e["forecast"]["wape"] == pytest.approx(0.0, abs=1e-9)
    assert e["naive"]["wape"] > 0.1
    assert e["forecast"]["pairs"] == e["naive"]["pairs"] == 14


def test_forecast_reads_nothing_on_or_after_its_day():
    daily = _daily()
    day = START + dt.timedelta(days=100)
    later = daily.copy()
    later.loc[later.date >= day, "units"] *= 50
    conf = ForecastConf()
    pd.testing.assert_frame_equal(forecast(daily, day, conf), forecast(later, day, conf))


def _net() -> Network:
    """Two warehouses in two regions."""
    return Network(
        node_id=np.array(["RDC-E", "RDC-W"]),
        kind=np.array([0, 0]),
        city=np.array(["c1", "c2"]),
        province=np.array(["p1", "p2"]),
        region=np.array(["east", "west"]),
        lat=np.array([31.0, 30.0]),
        lon=np.array([120.0, 104.0]),
        wave_cutoff_min=np.array([[600.0], [600.0]]),
        wave_capacity=np.array([[50], [50]]),
        regions=("east", "west"),
        remote_provinces=frozenset(),
        promise_days=np.array([1, 2, 4, 7]),
        carrier_parcels=np.ones((4, 4), dtype=np.int64),
        carriers_by_zone=np.ones((4, 4), dtype=bool),
        damage_refund_share=0.6,
        lead_hours=1.0,
    )


def test_transfers_fill_a_short_region_from_spare_stock_elsewhere():
    net = _net()
    stock = np.array([[100], [2]])  # east holds plenty, west little
    demand = pd.DataFrame({"region": ["east", "west"], "sku": ["S", "S"], "units": [30, 12]})
    moves = transfers(net, stock, demand, {"S": 0}, np.array([1.0]), TransferConf())
    assert len(moves) == 1
    m = moves.iloc[0]
    assert (m.from_node, m.to_node, m.sku, m.units) == (0, 1, 0, 10)
    assert m.cost == pytest.approx(10 * (0.6 * 1.0 + 0.2))
    # East keeps what its own forecast needs: asking for more than the spare moves the spare.
    demand.loc[1, "units"] = 200
    moves = transfers(net, stock, demand, {"S": 0}, np.array([1.0]), TransferConf())
    assert int(moves.units.sum()) == 70
    # A move dearer than the shipping it saves is not made.
    heavy = transfers(net, stock, demand, {"S": 0}, np.array([10.0]), TransferConf())
    assert heavy.empty
