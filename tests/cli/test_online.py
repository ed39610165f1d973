"""`cadence features online` on a shop's own order log: imported from a CSV, built, applied and
materialised; an id the online store has no features for is named on stderr, never served as
a row of silent nulls."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli.app import app

pytestmark = pytest.mark.e2e

runner = CliRunner()


def _run(home: Path, *args: str):
    return runner.invoke(app, list(args), env={"CADENCE_HOME": str(home)})


@pytest.fixture(scope="module")
def shop(world_dir, tmp_path_factory) -> dict:
    """An order log alone, as a shop exports it, taken to the online store."""
    home = tmp_path_factory.mktemp("online")
    orders = pd.read_parquet(world_dir / "raw" / "orders.parquet")
    log = home.parent / f"{home.name}-orders.csv"
    orders.rename(columns={"user_id": "customer", "ordered_at": "time", "amount": "total"})[
        ["customer", "time", "total"]
    ].to_csv(log, index=False)
    steps = {}
    for args in (
        ("data", "import-orders", str(log), "--customer", "customer", "--timestamp", "time")
        + ("--amount", "total"),
        ("features", "build"),
        ("features", "apply"),
        ("features", "materialize"),
    ):
        steps[args[1]] = r = _run(home, *args)
        assert r.exit_code == 0, f"{args}: {r.output}"
    buyers = orders.user_id.value_counts()
    return {"home": home, "steps": steps, "buyer": buyers.index[0]}


def test_an_order_log_workspace_is_materialised_with_only_its_families(shop):
    from cadence.features._store import open_store

    store = open_store(shop["home"] / "feast", "sqlite")
    views = {v.name for v in store.list_feature_views()}
    assert "orders" in views and "sessions" not in views and "node" not in views
    r = _run(shop["home"], "features", "online", shop["buyer"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["user_id"] == shop["buyer"] and row["orders_365d"] >= 1


def test_an_unknown_id_is_named_on_stderr_and_the_rest_printed(shop):
    r = _run(shop["home"], "features", "online", shop["buyer"], "u999")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["user_id"] for row in rows] == [shop["buyer"]]
    assert "no features for user 'u999' in the online store" in r.stderr
    assert "unknown id, or not materialised" in r.stderr
    assert shop["buyer"] not in r.stderr


def test_no_id_found_exits_2_naming_them(shop):
    r = _run(shop["home"], "features", "online", "u999", "nobody")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "'u999', 'nobody'" in r.stderr and "not materialised" in r.stderr
