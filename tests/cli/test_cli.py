"""The `cadence` command line, end to end on small worlds in a temporary workspace."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cadence.cli.app import app
from cadence.flows.settings import Settings

pytestmark = pytest.mark.e2e

runner = CliRunner()
SMALL = ["--users", "200", "--days", "30", "--seed", "3"]


def _run(home: Path, *args: str, conf: Path | None = None):
    env = {"CADENCE_HOME": str(home)}
    if conf is not None:
        env["CADENCE_CONF"] = str(conf)
    return runner.invoke(app, list(args), env=env)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.parquet")}


def test_generate_writes_raw_and_truth_and_same_seed_gives_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a, "world", "generate", *SMALL).exit_code == 0
    assert _run(b, "world", "generate", *SMALL).exit_code == 0
    raw, truth = _digests(a / "raw"), _digests(a / "truth")
    assert {"users.parquet", "orders.parquet", "shipments.parquet"} <= raw.keys()
    assert {"oracle.parquet", "latent.parquet"} <= truth.keys()
    assert raw == _digests(b / "raw") and truth == _digests(b / "truth")
    manifest = json.loads((a / "raw" / "manifest.json").read_text())
    assert manifest["end"] == "2025-01-31T00:00:00Z" and manifest["tables"]["users"] == 200
    other = tmp_path / "c"
    assert _run(other, "world", "generate", *SMALL[:-1], "4").exit_code == 0
    assert _digests(other / "raw")["orders.parquet"] != raw["orders.parquet"]


def test_generate_then_validate_needs_no_paths(tmp_path):
    assert _run(tmp_path, "world", "generate", *SMALL).exit_code == 0
    result = _run(tmp_path, "data", "validate")
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_reports_violations_with_exit_2_and_changes_nothing(tmp_path):
    assert _run(tmp_path, "world", "generate", *SMALL).exit_code == 0
    raw = tmp_path / "raw"
    orders = pq.read_table(raw / "orders.parquet")
    amount = pc.multiply(orders.column("amount"), -1.0)
    orders = orders.set_column(orders.schema.get_field_index("amount"), "amount", amount)
    pq.write_table(orders, raw / "orders.parquet")
    before = _digests(raw)
    result = _run(tmp_path, "data", "validate")
    assert result.exit_code == 2
    assert "orders" in result.output and "amount" in result.output
    assert _digests(raw) == before


def test_bad_world_arguments_exit_2_with_a_message(tmp_path):
    result = _run(tmp_path, "world", "generate", "--days", "0")
    assert result.exit_code == 2
    assert "days must be at least 1" in result.output
    assert not (tmp_path / "raw").exists()


def test_import_orders_fail_writes_nothing_skip_writes_the_rest(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("who,when,paid\nA,2025-01-02,3.5\nB,yesterday,2\nC,2025-01-03,inf\n")
    out = tmp_path / "shop"
    args = [
        "data",
        "import-orders",
        str(log),
        "--customer",
        "who",
        "--timestamp",
        "when",
        "--amount",
        "paid",
        "--out",
        str(out),
    ]
    failed = _run(tmp_path, *args)
    assert failed.exit_code == 2
    assert "line 3" in failed.output and "line 4" in failed.output
    assert not out.exists()
    done = _run(tmp_path, *args, "--on-bad-rows", "skip")
    assert done.exit_code == 0, done.output
    assert "imported 1 orders" in done.output and "line 3" in done.output
    assert _run(tmp_path, "data", "validate", str(out)).exit_code == 0


@pytest.fixture
def tiny_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(Settings().conf, conf)
    (conf / "world.yaml").write_text(
        "users: 300\ndays: 35\nseed: 2\nstart: '2025-02-01'\n"
        "truth: {every_days: 7, horizons_days: [7, 30]}\n"
    )
    return conf


def test_unknown_configuration_key_is_refused(tmp_path, tiny_conf):
    (tiny_conf / "world.yaml").write_text("users: 10\nuser_count: 20\n")
    result = _run(tmp_path, "world", "generate", conf=tiny_conf)
    assert result.exit_code == 2
    assert "user_count" in result.output


def test_features_build_refuses_bad_snapshots_and_keeps_previous_files(tmp_path):
    assert _run(tmp_path, "world", "generate", *SMALL).exit_code == 0
    ok = _run(tmp_path, "features", "build", "--snapshots", "2025-01-20,2025-01-31")
    assert ok.exit_code == 0, ok.output
    before = _digests(tmp_path / "features" / "users")
    assert len(before) >= 10
    outside = _run(tmp_path, "features", "build", "--snapshots", "2025-03-01")
    assert outside.exit_code == 2
    assert "2025-03-01" in outside.output and "outside the data's range" in outside.output
    bad = _run(tmp_path, "features", "build", "--snapshots", "2025-01-20:2025-01-31:x")
    assert bad.exit_code == 2 and "7d" in bad.output
    assert _digests(tmp_path / "features" / "users") == before


def test_features_build_names_a_missing_column(tmp_path):
    assert _run(tmp_path, "world", "generate", *SMALL).exit_code == 0
    raw = tmp_path / "raw"
    pq.write_table(
        pq.read_table(raw / "sessions.parquet").drop(["pages"]), raw / "sessions.parquet"
    )
    result = _run(tmp_path, "features", "build")
    assert result.exit_code == 2
    assert "sessions" in result.output and "pages" in result.output


def test_features_build_on_an_imported_order_log(tmp_path):
    log = tmp_path / "log.csv"
    rows = [f"c{i % 7},2025-0{1 + i % 3}-{1 + i % 27:02d}T10:00:00,{5 + i}" for i in range(60)]
    log.write_text("cust,at,total\n" + "\n".join(rows) + "\n")
    assert (
        _run(
            tmp_path,
            "data",
            "import-orders",
            str(log),
            "--customer",
            "cust",
            "--timestamp",
            "at",
            "--amount",
            "total",
        ).exit_code
        == 0
    )
    result = _run(tmp_path, "features", "build", "--snapshots", "2025-02-15,2025-03-27")
    assert result.exit_code == 0, result.output
    assert "left out" in result.output and "sessions" in result.output
    files = {p.stem for p in (tmp_path / "features" / "users").glob("*.parquet")}
    assert files == {"orders", "gaps", "time_habits", "trends", "btyd"}


def test_features_list_json_has_the_whole_catalogue(tmp_path):
    result = _run(tmp_path, "features", "list", "--json")
    rows = json.loads(result.output)
    assert len([r for r in rows if r["entity"] == "user_id"]) >= 200
    assert {"name", "family", "window_days", "dtype", "description"} <= rows[0].keys()
