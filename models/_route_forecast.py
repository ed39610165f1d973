"""Regional demand 72 hours ahead, and stock moved ahead of it.

Demand is the units each destination region ordered per SKU and day (every line of every order
that was to be shipped, sold out or not). The forecast for the next `horizon_days` is the mean
daily demand of the last `window_days`, shaped by the region's weekday pattern (each weekday's
share of the region's units over the last `season_days`, all SKUs together, so sparse SKUs
borrow the region's rhythm). It is compared, on the same days, with the naive forecast: the
last week's mean.

Pre-positioning: where a region's warehouses hold less of a SKU than the forecast asks for the
next days, units come from the warehouse elsewhere holding the most beyond its own region's
forecast, as long as the move costs less than the cost it is expected to save. Each transfer's
saving is not assumed but measured: the replay routes the same days with and without the
transfers, the transfers' cost counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cadence.models._route_inputs import Network


@dataclass(frozen=True)
class ForecastConf:
    horizon_days: int = 3
    window_days: int = 28
    season_days: int = 84


def daily_demand(orders: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """(date, region, sku, units) from orders (`order_id`, `ordered_at`, `region`) and their
    lines (`order_id`, `sku`, `quantity`)."""
    j = lines.merge(orders[["order_id", "ordered_at", "region"]], on="order_id")
    j["date"] = j.ordered_at.dt.tz_convert("UTC").dt.floor("D").dt.date
    return (
        j.groupby(["date", "region", "sku"], as_index=False)
        .quantity.sum()
        .rename(columns={"quantity": "units"})
    )


def forecast(daily: pd.DataFrame, as_of, conf: ForecastConf) -> pd.DataFrame:
    """Units per (region, sku) over the `horizon_days` from `as_of` (a date; only days before
    it are read)."""
    as_of = pd.Timestamp(as_of).date()
    d = daily[daily.date < as_of]
    start = as_of - pd.Timedelta(days=conf.window_days).to_pytimedelta()
    recent = d[d.date >= start]
    mean = recent.groupby(["region", "sku"]).units.sum() / conf.window_days
    # Weekday shape per region: each weekday's mean daily units over the region's mean.
    season_start = as_of - pd.Timedelta(days=conf.season_days).to_pytimedelta()
    s = d[d.date >= season_start]
    by_day = s.groupby(["region", "date"]).units.sum().reset_index()
    by_day["weekday"] = pd.to_datetime(by_day.date).dt.weekday
    days = pd.date_range(season_start, periods=conf.season_days, freq="D")
    counts = pd.Series(days.weekday).value_counts().reindex(range(7)).fillna(1)
    per_weekday = by_day.groupby(["region", "weekday"]).units.sum().unstack(fill_value=0)
    per_weekday = per_weekday.reindex(columns=range(7), fill_value=0) / counts.to_numpy()
    level = per_weekday.mean(axis=1).replace(0, np.nan)
    shape = per_weekday.div(level, axis=0).fillna(1.0)
    ahead = [
        (pd.Timestamp(as_of) + pd.Timedelta(days=i)).weekday() for i in range(conf.horizon_days)
    ]
    factor = shape[ahead].sum(axis=1)
    out = mean.reset_index(name="daily")
    out["units"] = out.daily * out.region.map(factor).fillna(float(conf.horizon_days)).to_numpy()
    return out[["region", "sku", "units"]]


def naive(daily: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame:
    as_of = pd.Timestamp(as_of).date()
    start = as_of - pd.Timedelta(days=7).to_pytimedelta()
    d = daily[(daily.date < as_of) & (daily.date >= start)]
    out = (d.groupby(["region", "sku"]).units.sum() / 7 * horizon_days).reset_index()
    return out


def actual(daily: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame:
    as_of = pd.Timestamp(as_of).date()
    end = as_of + pd.Timedelta(days=horizon_days).to_pytimedelta()
    d = daily[(daily.date >= as_of) & (daily.date < end)]
    return d.groupby(["region", "sku"]).units.sum().reset_index()


def errors(daily: pd.DataFrame, origins: list, conf: ForecastConf) -> dict[str, dict[str, float]]:
    """WAPE and MAE per (region, sku, origin) of the forecast and the naive one, over the
    origins given (each forecasting the `horizon_days` after it)."""
    rows = {"forecast": [], "naive": []}
    keys = ["region", "sku"]
    for as_of in origins:
        truth = actual(daily, as_of, conf.horizon_days)
        made = {
            "forecast": forecast(daily, as_of, conf),
            "naive": naive(daily, as_of, conf.horizon_days),
        }
        # Both are scored on the same pairs: every pair either forecast or bought.
        pairs = pd.concat([truth[keys], *(f[keys] for f in made.values())]).drop_duplicates()
        for name, f in made.items():
            j = pairs.merge(truth, on=keys, how="left").merge(
                f, on=keys, how="left", suffixes=("", "_f")
            )
            rows[name].append(j.fillna(0))
    out = {}
    for name, parts in rows.items():
        j = pd.concat(parts, ignore_index=True)
        err = (j.units_f - j.units).abs()
        out[name] = {
            "wape": round(float(err.sum() / max(j.units.sum(), 1e-9)), 4),
            "mae": round(float(err.mean()), 4),
            "pairs": int(len(j)),
            "origins": len(origins),
        }
    return out


@dataclass(frozen=True)
class TransferConf:
    cover: float = 1.0  # units wanted in the region per unit forecast
    cost_per_kg: float = 0.6  # the line-haul between warehouses, per kg moved
    cost_per_unit: float = 0.2  # handling at both ends
    saving_per_unit: float = 3.0  # the shipping a local unit is expected to save
    max_units: int = 10_000


def transfers(
    net: Network,
    stock: np.ndarray,
    demand: pd.DataFrame,
    sku_index: dict[str, int],
    weight: np.ndarray,
    conf: TransferConf,
) -> pd.DataFrame:
    """Moves (from node, to node, sku index, units, cost) that bring each region's warehouses
    up to the forecast, from warehouses elsewhere with units beyond their own region's
    forecast; only where the expected saving exceeds the move's cost."""
    wh = np.flatnonzero(net.kind < 2)
    region_of = net.region
    need = {}
    for row in demand.itertuples(index=False):
        s = sku_index.get(row.sku)
        if s is not None:
            need[(row.region, s)] = need.get((row.region, s), 0.0) + row.units * conf.cover
    spare = stock.astype(float).copy()
    # What each warehouse's own region will want stays where it is.
    for (region, s), units in need.items():
        local = wh[region_of[wh] == region]
        if local.size:
            held = spare[local, s].sum()
            keep = min(held, units)
            if held > 0:
                spare[local, s] -= spare[local, s] * keep / held
    moves = []
    moved = 0
    for (region, s), units in sorted(need.items(), key=lambda kv: -kv[1]):
        local = wh[region_of[wh] == region]
        if not local.size:
            continue
        short = int(np.ceil(units - stock[local, s].sum()))
        if short <= 0:
            continue
        unit_cost = conf.cost_per_kg * weight[s] + conf.cost_per_unit
        if unit_cost >= conf.saving_per_unit:
            continue
        donors = wh[region_of[wh] != region]
        if not donors.size:
            continue
        donor = donors[np.argmax(spare[donors, s])]
        units_moved = int(min(short, np.floor(spare[donor, s]), conf.max_units - moved))
        if units_moved <= 0:
            continue
        to = local[np.argmax(net.wave_capacity[local].sum(axis=1))]
        spare[donor, s] -= units_moved
        moved += units_moved
        moves.append((int(donor), int(to), s, units_moved, units_moved * unit_cost))
        if moved >= conf.max_units:
            break
    return pd.DataFrame(moves, columns=["from_node", "to_node", "sku", "units", "cost"])
