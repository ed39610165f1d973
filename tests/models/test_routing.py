"""Routing on a small simulated shop: models trained on its parcels, each strategy's plans
checked against stock and capacity, and the bounds between the strategies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.flows.settings import Settings
from cadence.flows.steps import routing as step
from cadence.models._route_eval import day_batch, stock_reader
from cadence.models._route_models import BoostParams, fit
from cadence.models._route_plan import (
    STRATEGIES,
    Batch,
    Objective,
    Router,
    Search,
    model_estimate,
    orders_objective,
)

pytestmark = pytest.mark.model

HOLDOUT = 14


@pytest.fixture(scope="module")
def shop(model_home: Path, tmp_path_factory):
    """The model world's raw tables and features, routing models fitted on all but its last
    two weeks, the world's truth, and three held-out days as batches."""
    home = tmp_path_factory.mktemp("routing-home")
    for part in ("raw", "features"):
        (home / part).symlink_to(model_home / part)
    settings = Settings(home=home, mlflow_tracking_uri=None)
    conf = settings.decisions().routing
    net = step.network(settings, conf)
    frame, targets, train, weather = step.training_data(settings, net, HOLDOUT)
    features = [c for c in frame.columns if c not in step.NOT_FEATURES]
    stored = fit(
        frame[train],
        targets[train],
        features=features,
        quantiles=(0.5, 0.9),
        params=BoostParams(n_estimators=60, n_jobs=1),
    )
    estimate = model_estimate(
        stored, net, weather, step.node_features(settings), net.damage_refund_share, 1.0
    )
    truth = step.truth_for(settings, net)
    orders = pd.read_parquet(settings.raw_dir / "orders.parquet")
    stock_of = stock_reader(settings.raw_dir, net)
    first = step.holdout_start(settings, HOLDOUT)
    batches = [
        day_batch(settings.raw_dir, net, first + pd.Timedelta(days=d), orders, stock_of)
        for d in range(3)
    ]
    return {"net": net, "estimate": estimate, "truth": truth, "batches": batches}


def _router(net, **search) -> Router:
    return Router(net, Objective(), Search(**{"time_limit_seconds": 30.0, **search}))


def _use(plan, batch: Batch):
    """Units per (node, sku) and parcels per (node, wave) the plan takes."""
    lines = np.flatnonzero(plan.line_parcel >= 0)
    node = plan.parcel_node[plan.line_parcel[lines]]
    units = pd.Series(batch.line_qty[lines]).groupby([node, batch.line_sku[lines]]).sum()
    slots = (
        pd.Series(1, index=range(plan.parcel_node.size))
        .groupby([plan.parcel_node, plan.parcel_wave])
        .sum()
    )
    return units, slots


def _true_objective(router: Router, batch: Batch, plan, truth) -> float:
    """The plan's objective as the truth prices it, unassigned orders at their penalty."""
    from cadence.models._route_eval import parcels_of

    rows = parcels_of(batch, plan)
    per = orders_objective(router.obj, router.net, rows, truth(rows))
    parcels = np.bincount(plan.parcel_order, minlength=len(batch.orders))
    extra = np.maximum(parcels - 1, 0).sum() * router.obj.split_penalty
    return float(per.sum() + extra + router.search.unserved_cost * (parcels == 0).sum())


def test_no_plan_takes_more_stock_or_capacity_than_there_is(shop):
    router = _router(shop["net"])
    for batch in shop["batches"]:
        assert len(batch.orders) > 5
        for s in STRATEGIES:
            plan = router.plan(s, batch, shop["estimate"], shop["truth"])
            units, slots = _use(plan, batch)
            held = batch.stock[units.index.get_level_values(0), units.index.get_level_values(1)]
            assert (units.to_numpy() <= held).all(), s
            assert plan.stock_violations == 0
            if s != "nearest":  # the static rule does not look at capacity
                cap = [router.capacity_left(batch, k) for k in slots.index]
                assert (slots.to_numpy() <= np.array(cap)).all(), s
                assert plan.capacity_violations == 0
            # Every order is planned or reported with a reason; every line of a planned
            # order travels.
            planned = set(plan.parcel_order.tolist())
            assert planned | set(plan.unassigned) == set(range(len(batch.orders)))
            assert not planned & set(plan.unassigned)
            in_plan = np.isin(batch.line_order, list(planned))
            assert (plan.line_parcel[in_plan] >= 0).all()


def test_optimal_is_never_worse_than_greedy_and_clairvoyant_bounds_them_all(shop):
    net, truth = shop["net"], shop["truth"]
    # Tight capacity makes the orders compete, so the program has work to do.
    tight = replace(net, wave_capacity=np.minimum(net.wave_capacity, 2))
    for n in (net, tight):
        router = _router(n)
        for batch in shop["batches"]:
            plans = {s: router.plan(s, batch, shop["estimate"], truth) for s in STRATEGIES}
            greedy, optimal = plans["greedy"], plans["optimal"]
            assert optimal.predicted_objective <= greedy.predicted_objective + 1e-6 + 1000 * (
                len(optimal.unassigned) - len(greedy.unassigned)
            )
            assert len(optimal.unassigned) <= len(greedy.unassigned)
            bound = _true_objective(router, batch, plans["clairvoyant"], truth)
            for s in ("greedy", "optimal", "nearest"):
                if plans[s].capacity_violations:
                    continue  # a plan no capacity allows is no benchmark for the bound
                other = _true_objective(router, batch, plans[s], truth)
                assert bound <= other * (1 + 1e-3) + 1e-6, (s, bound, other)


def test_orders_that_cannot_be_served_are_reported_and_the_rest_planned(shop):
    batch = shop["batches"][0]
    lines = batch.line_order
    first = [int(np.flatnonzero(lines == r)[0]) for r in range(3)]
    sku = batch.line_sku.copy()
    sku[first[0]] = -1  # a SKU the catalogue does not know
    stock = batch.stock.copy()
    stock[:, batch.line_sku[first[1]]] = 0  # a SKU nobody holds
    orders = batch.orders.copy()
    orders.loc[2, "dest_lat"] = np.nan  # an address that cannot be placed
    broken = replace(batch, orders=orders, line_sku=sku, stock=stock, used={})
    router = _router(shop["net"])
    for s in STRATEGIES:
        plan = router.plan(s, broken, shop["estimate"], shop["truth"])
        assert plan.unassigned[0] == "unknown SKU"
        assert plan.unassigned[1].startswith("no node holds")
        assert plan.unassigned[2] == "unknown destination"
        assert not {0, 1, 2} & set(plan.parcel_order.tolist())
        assert set(plan.parcel_order.tolist()) | set(plan.unassigned) == set(range(len(orders)))


def test_the_array_path_weighs_the_same_candidates_as_the_frame_path(shop):
    """The learned models' candidates are built as arrays; any other estimate's through
    frames. On the same batch, including orders no node holds whole (split), both give the
    same rows and objectives."""
    router = _router(shop["net"])
    batch = shop["batches"][0]
    # Each SKU at one node only: orders of SKUs at different nodes must be split.
    n_sku = batch.stock.shape[1]
    one = np.zeros_like(batch.stock)
    one[np.arange(n_sku) % batch.stock.shape[0], np.arange(n_sku)] = batch.stock.sum(axis=0)
    thin = replace(batch, stock=one, used={})
    for b in (batch, thin):
        fast = router.candidates(b, shop["estimate"], all_nodes=False)
        slow = router._candidates_frame(b, shop["estimate"], all_nodes=False)
        key = ["cand", "node", "part", "wave_us"]
        fast = fast.sort_values(key).reset_index(drop=True)
        slow = slow.sort_values(key).reset_index(drop=True)
        cols = ["cand", "order_row", "node", "part", "carrier", "wave_us"]
        pd.testing.assert_frame_equal(fast[cols], slow[cols], check_dtype=False)
        np.testing.assert_allclose(fast.objective, slow.objective, rtol=1e-9)
        same = [
            (a is None and b_ is None) or np.array_equal(a, b_)
            for a, b_ in zip(fast.lines, slow.lines, strict=True)
        ]
        assert all(same)
    # The thin batch had splits to compare.
    assert fast.lines.map(lambda ls: ls is not None).any()
