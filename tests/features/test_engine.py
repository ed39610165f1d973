"""The engine on DuckDB: point-in-time correctness, no sensitive inputs, partial worlds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cadence.features import compute, connect, load_sources
from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES, node_features, user_features
from cadence.ingest import SCHEMAS
from tests.conftest import STAGE_WORLD

pytestmark = pytest.mark.data

T = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
TS = pd.Timestamp(T)


def _tables(raw: Path) -> dict[str, pd.DataFrame]:
    return {
        t: pd.read_parquet(raw / f"{t}.parquet") for t in SCHEMAS if (raw / f"{t}.parquet").exists()
    }


def _features(tmp: Path, frames: dict[str, pd.DataFrame], snaps=(T,)):
    tmp.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp / f"{name}.parquet"
        pa.Table.from_pandas(
            frame, schema=SCHEMAS[name], preserve_index=False
        ).to_pandas()  # schema check
        pa.parquet.write_table(
            pa.Table.from_pandas(frame, schema=SCHEMAS[name], preserve_index=False), paths[name]
        )
    con = connect("duckdb")
    return compute(con, load_sources(con, paths), list(snaps))


@pytest.fixture(scope="module")
def frames(world_dir) -> dict[str, pd.DataFrame]:
    import pyarrow.parquet  # noqa: F401  (pa.parquet above)

    return _tables(world_dir / "raw")


@pytest.fixture(scope="module")
def baseline(frames, tmp_path_factory):
    return _features(tmp_path_factory.mktemp("base"), frames)


def _cut_at(frames: dict[str, pd.DataFrame], t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Deletes every event at or after t, and rewrites what only became known after t."""
    f = {k: v.copy() for k, v in frames.items()}
    f["users"] = f["users"][f["users"].signup_at < t]
    users = set(f["users"].user_id)
    for name, col in [
        ("sessions", "started_at"),
        ("cart_events", "ts"),
        ("searches", "ts"),
        ("coupons", "issued_at"),
        ("returns", "requested_at"),
        ("service_contacts", "ts"),
        ("address_changes", "changed_at"),
    ]:
        f[name] = f[name][(f[name][col] < t) & f[name].user_id.isin(users)]
    f["orders"] = f["orders"][f["orders"].ordered_at < t]
    kept = set(f["orders"].order_id)
    f["order_items"] = f["order_items"][f["order_items"].order_id.isin(kept)]
    f["shipments"] = f["shipments"][f["shipments"].order_id.isin(kept)]
    f["inventory"] = f["inventory"][pd.to_datetime(f["inventory"].date) < t.tz_localize(None)]
    # Known only later: a parcel delivered after t, a coupon redeemed after t.
    s = f["shipments"]
    later = s.delivered_at.isna() | (s.delivered_at >= t)
    s.loc[later, "delivered_at"] = s.loc[later, "shipped_at"].fillna(t) + pd.Timedelta(days=40)
    s["late"] = s["late"].astype("boolean")
    s["damaged"] = s["damaged"].astype("boolean")
    s.loc[later, "late"] = ~s.loc[later, "late"].fillna(False)
    s.loc[later, "damaged"] = True
    shipped_later = s.shipped_at.notna() & (s.shipped_at >= t)
    s.loc[shipped_later, "shipped_at"] = s.loc[shipped_later, "shipped_at"] + pd.Timedelta(days=1)
    c = f["coupons"]
    c.loc[c.redeemed_at >= t, ["redeemed_at", "order_id"]] = None
    f["coupons"] = c.astype({"order_id": "Int64"})
    f["order_items"] = f["order_items"].astype({"shipment_id": "Int64"})
    f["service_contacts"] = f["service_contacts"].astype({"order_id": "Int64"})
    return f


def test_events_at_or_after_t_do_not_change_features_at_t(frames, baseline, tmp_path):
    cut = _features(tmp_path, _cut_at(frames, TS))
    assert cut.users.equals(baseline.users)
    assert cut.nodes.equals(baseline.nodes)


def test_an_event_just_before_t_moves_the_features_it_should(frames, baseline, tmp_path):
    f = {k: v.copy() for k, v in frames.items()}
    who = baseline.users.column("user_id")[0].as_py()
    at = TS - pd.Timedelta(minutes=1)
    oid = int(f["orders"].order_id.max()) + 1
    f["orders"] = pd.concat(
        [
            f["orders"],
            pd.DataFrame(
                [
                    {
                        "order_id": oid,
                        "user_id": who,
                        "ordered_at": at,
                        "channel": "app",
                        "n_items": 1,
                        "amount": 12.5,
                        "discount": 0.0,
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    f["sessions"] = pd.concat(
        [
            f["sessions"],
            pd.DataFrame(
                [
                    {
                        "session_id": int(f["sessions"].session_id.max()) + 1,
                        "user_id": who,
                        "started_at": at - pd.Timedelta(minutes=5),
                        "device": "ios",
                        "pages": 3,
                        "dwell_seconds": 60.0,
                        "category": "coffee",
                        "categories_viewed": 1,
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    for name in ("order_items", "shipments", "coupons", "service_contacts"):
        f[name] = f[name].astype(
            {
                c: "Int64"
                for c in ("shipment_id", "order_id")
                if c in f[name] and f[name][c].isna().any()
            }
        )
    moved = _features(tmp_path, f).users.to_pandas().set_index("user_id").loc[who]
    before = baseline.users.to_pandas().set_index("user_id").loc[who]
    assert moved.orders_7d == before.orders_7d + 1
    assert moved.spend_7d == pytest.approx(before.spend_7d + 12.5)
    assert moved.days_since_last_order == pytest.approx(1 / 1440)
    assert moved.sessions_7d == before.sessions_7d + 1
    assert moved.tenure_days == before.tenure_days  # unrelated features stay


def test_sensitive_attributes_do_not_reach_any_feature(frames, baseline, tmp_path):
    f = dict(frames)
    users = f["users"].copy()
    rng = np.random.default_rng(0)
    users["gender"] = rng.permutation(users.gender.to_numpy())
    users["age_band"] = rng.permutation(users.age_band.to_numpy())
    f["users"] = users
    assert _features(tmp_path, f).users.equals(baseline.users)


def test_an_orders_only_import_gets_order_families_and_nothing_else(frames, tmp_path):
    orders = frames["orders"].assign(channel=None)
    result = _features(tmp_path, {"orders": orders})
    names = {f.name for f in result.families}
    assert names == {"orders", "gaps", "time_habits", "trends", "btyd"}
    cols = set(result.users.column_names)
    assert "orders_30d" in cols and "gap_mean" in cols
    assert "trend_orders_30d_over_orders_90d" in cols
    assert not cols & {"sessions_30d", "cart_open_items", "tenure_days", "coffee_days_since"}
    assert result.nodes is None


def test_every_family_returns_exactly_its_declared_columns(baseline):
    declared = [f.name for fam in USER_FAMILIES for f in fam.features]
    assert baseline.users.column_names == ["user_id", "snapshot_at", *declared]
    node_declared = [f.name for fam in NODE_FAMILIES for f in fam.features]
    assert baseline.nodes.column_names == ["node_id", "snapshot_at", *node_declared]


def test_features_have_the_declared_types_and_sensible_values(baseline):
    for table, declared in ((baseline.users, user_features()), (baseline.nodes, node_features())):
        built = {f.name: f.type for f in table.schema}
        wrong = {
            f.name: (f.dtype, str(built[f.name]))
            for f in declared
            if built[f.name] != pa.type_for_alias(f.dtype)
        }
        assert not wrong, f"declared vs built Arrow type: {wrong}"
    # Both kinds occur, so the check above compares something of each.
    assert {f.dtype for f in user_features()} == {"int64", "float64"}
    df = baseline.users.to_pandas()
    assert len(df) == df.user_id.nunique()  # one row per shopper for one snapshot
    assert (df.orders_7d <= df.orders_30d).all() and (df.orders_30d <= df.orders_365d).all()
    assert (df.days_since_last_order.dropna() > 0).all()
    assert df.cart_abandonment_30d.dropna().between(0, 1).all()
    assert STAGE_WORLD.users >= len(df)
    # BG/NBD is fitted on this snapshot's buyers: every buyer gets values, nobody else does.
    buyers = df.days_since_first_order.notna()
    assert df.loc[buyers, "btyd_p_alive"].between(0, 1).all() and buyers.sum() >= 50
    assert df.loc[~buyers, "btyd_p_alive"].isna().all()
    assert (df.order_days_all[buyers] <= df.orders_all[buyers]).all()
    assert (df.btyd_orders_30d[buyers] <= df.btyd_orders_90d[buyers]).all()


def test_gaps_that_are_all_equal_have_a_standard_deviation_of_exactly_zero(tmp_path):
    """Two passes (deviations from the mean, summed exactly): a shopper who orders every 30
    days has a gap std of 0, not the rounding left over by a sum of squares."""
    start = pd.Timestamp("2024-01-05 10:00", tz="UTC")
    every_30 = [start + pd.Timedelta(days=30 * k) for k in range(7)]
    uneven = [start + pd.Timedelta(days=d) for d in (0, 7, 21)]
    times = every_30 + uneven
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, len(times) + 1, dtype=np.int64),
            "user_id": ["steady"] * len(every_30) + ["uneven"] * len(uneven),
            "ordered_at": times,
            "channel": None,
            "n_items": np.ones(len(times), dtype=np.int32),
            "amount": 10.0,
            "discount": 0.0,
        }
    )
    users = _features(tmp_path, {"orders": orders}).users.to_pandas().set_index("user_id")
    assert users.loc["steady", "gap_std"] == 0.0
    assert users.loc["steady", "gap_mean"] == 30.0
    # Gaps 7 and 14: sample std sqrt(2 * 3.5^2).
    assert users.loc["uneven", "gap_std"] == pytest.approx(np.sqrt(2 * 3.5**2), abs=1e-9)


def test_the_order_value_std_is_exact_and_zero_for_equal_values(tmp_path):
    """Order values of 333.33 every time give exactly 0 (a sum of squares far from zero would
    leave rounding behind); other values match the textbook sample deviation."""
    start = pd.Timestamp("2024-01-05 10:00", tz="UTC")
    values = {"same": [333.33] * 7, "mixed": [1234.56, 19.99, 7.25, 19.99]}
    rows = [
        (u, start + pd.Timedelta(days=3 * k), v)
        for u, vs in values.items()
        for k, v in enumerate(vs)
    ]
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, len(rows) + 1, dtype=np.int64),
            "user_id": [r[0] for r in rows],
            "ordered_at": [r[1] for r in rows],
            "channel": None,
            "n_items": np.ones(len(rows), dtype=np.int32),
            "amount": [r[2] for r in rows],
            "discount": 0.0,
        }
    )
    users = _features(tmp_path, {"orders": orders}).users.to_pandas().set_index("user_id")
    assert users.loc["same", "order_value_std"] == 0.0
    expected = np.std(values["mixed"], ddof=1)
    assert users.loc["mixed", "order_value_std"] == pytest.approx(expected, rel=1e-12)


def test_the_cart_at_a_snapshot_is_each_items_last_action_before_it(tmp_path):
    """Per item, the last event strictly before the snapshot (by time, then id) decides:
    an add left in the cart counts, a remove or checkout takes it out, an event at the
    snapshot itself is not yet seen, and of two events at one instant the later id wins."""
    t = pd.Timestamp(T)
    h = pd.Timedelta(hours=1)
    events = [  # user, sku, time, action, quantity
        ("a", "s1", t - 5 * h, "add", 2),  # still in the cart: counts, oldest item
        ("a", "s2", t - 4 * h, "add", 1),
        ("a", "s2", t - 3 * h, "remove", 1),  # taken out
        ("a", "s3", t - 2 * h, "add", 1),
        ("a", "s3", t, "remove", 1),  # at the snapshot: not yet seen, s3 counts
        ("b", "s1", t - 2 * h, "add", 1),
        ("b", "s1", t - 2 * h, "purchase", 1),  # same instant, later id: checked out
        ("c", "s1", t - 3 * h, "remove", 1),
        ("c", "s1", t - 3 * h, "add", 4),  # same instant, later id: in the cart
    ]
    cart = pd.DataFrame(events, columns=["user_id", "sku", "ts", "action", "quantity"])
    cart.insert(0, "event_id", np.arange(1, len(cart) + 1, dtype=np.int64))
    cart["quantity"] = cart.quantity.astype(np.int16)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, 4, dtype=np.int64),
            "user_id": ["a", "b", "c"],
            "ordered_at": [t - pd.Timedelta(days=10)] * 3,
            "channel": None,
            "n_items": np.ones(3, dtype=np.int32),
            "amount": 5.0,
            "discount": 0.0,
        }
    )
    products = pd.DataFrame(
        {
            "sku": ["s1", "s2", "s3"],
            "category": "coffee",
            "price": [2.5, 10.0, 1.25],
            "weight_kg": 1.0,
            "volume_cm3": 100.0,
            "fragile": False,
        }
    )
    frames = {"orders": orders, "cart_events": cart, "products": products}
    got = _features(tmp_path, frames).users.to_pandas().set_index("user_id")
    assert got.loc["a", "cart_open_items"] == 3
    assert got.loc["a", "cart_open_value"] == pytest.approx(2 * 2.5 + 1.25)
    assert got.loc["a", "cart_oldest_item_days"] == pytest.approx(5 / 24)
    assert got.loc["b", "cart_open_items"] == 0
    assert got.loc["c", "cart_open_items"] == 4


def test_a_nodes_stock_at_any_hour_is_that_of_the_last_day_that_ended(frames, tmp_path):
    """Stock is known per day, once the day has ended: at 00:00 and at 13:37 of the same day
    a node holds what it held at the end of the day before."""
    later = T + dt.timedelta(hours=13, minutes=37)
    nodes = _features(tmp_path, frames, snaps=(T, later)).nodes.to_pandas()
    at = nodes.pivot(index="node_id", columns="snapshot_at", values="node_on_hand_units")
    assert (at[pd.Timestamp(T)] > 0).any()
    assert at[pd.Timestamp(T)].equals(at[pd.Timestamp(later)])
