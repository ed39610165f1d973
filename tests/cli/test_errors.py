"""Bad input, table-driven: each case exits 2 with one message naming the option, file or
setting at fault, and leaves the workspace's bytes as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadence.cli.app import app
from tests.cli._workspace import workspace_bytes as _bytes

pytestmark = pytest.mark.e2e

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A small generated world: bad commands must leave it untouched."""
    home = tmp_path_factory.mktemp("errors")
    args = ["world", "generate", "--users", "150", "--days", "35", "--seed", "4"]
    assert runner.invoke(app, args, env={"CADENCE_HOME": str(home)}).exit_code == 0
    return home


# Order logs for the import cases, written by the `logs` fixture; "{logs}" in a case's args
# or text stands for their folder.
LOGS = {
    "good.csv": "who,when,paid\nA,2025-01-02 10:00,3.5\nB,2025-01-03 11:00,2\n",
    "future.csv": "who,when,paid\nA,2025-01-02,3.5\nB,2999-01-03,2\n",
    "dst-gap.csv": "who,when,paid\nA,2025-03-30 02:30,3.5\n",
    "two-forms.csv": "who,when,paid\nA,02/03/2025,3.5\nB,04/05/2025,2\n",
    "mixed-forms.csv": "who,when,paid\nA,31/01/2025,3.5\nB,01/31/2025,2\n",
    "not-iso.csv": "who,when,paid\nA,2025-01-02,3.5\nB,02.01.2025,2\n",
    **{
        f"amount-{i}.csv": f"who,when,paid\nA,2025-01-02,1\nB,2025-01-03,{amount}\n"
        for i, amount in enumerate(
            ["inf", "-inf", "nan", "NaN", '"1,234.50"', '"1.234,50"', "1 234", '"12,50"', "$12"]
        )
    },
    "european.csv": "who;when;paid\nA;2025-01-02;12,50\nB;2025-01-03;1.234,50\n",
    "zero.csv": "who,when,paid,n\nA,2025-01-02,1,0\n",
    "duplicates.csv": "who,when,paid\nA,2025-01-02,1\nA,2025-01-02,1.0\n",
    "ids.csv": "nr,who,when,paid,gone\n1,A,2025-01-02,1,no\n1,B,2025-01-03,2,maybe\n",
    "priced.csv": "who,when,n,price\nA,2025-01-02,3,2.55\nB,2025-01-03,2,inf\n",
    "broken.parquet": "PAR1 not parquet",
    "empty.csv": b"",
    "blank.csv": "\n\n",
    "empty.parquet": b"",
    "latin-1.csv": "who,when,paid\nJosé,2025-01-02,3\n".encode("latin-1"),
    "short-line.csv": "who,when,paid\nA,2025-01-02,3\nB,2025-01-03\n",
    "notes.txt": "who,when,paid\n",
}


def _import(log: str, *extra: str) -> list[str]:
    cols = ["--customer", "who", "--timestamp", "when", "--amount", "paid"]
    return ["data", "import-orders", f"{{logs}}/{log}", *cols, "--replace", *extra]


def _priced(log: str, *extra: str) -> list[str]:
    cols = ["--customer", "who", "--timestamp", "when", "--unit-price", "price"]
    return ["data", "import-orders", f"{{logs}}/{log}", *cols, "--replace", *extra]


CASES = [
    # (args, extra environment, text the message must hold)
    (["world", "generate", "--seed", "-1"], {}, "seed must be 0 or more"),
    (["world", "generate", "--start", "2025-02-30"], {}, "world configuration"),
    (["features", "build", "--snapshots", ","], {}, "--snapshots ','"),
    (["features", "build", "--snapshots", "2025-13-01"], {}, "--snapshots 2025-13-01"),
    (["features", "build", "--engine", "polars"], {}, "--engine"),
    (["features", "online", "u1", "--service", "nope"], {}, "--service"),
    (["features", "online", "u1", "--service", "routing_v1"], {}, "keyed by node"),
    (["features", "materialize"], {}, "cadence features build"),
    (["train", "repurchase", "--horizon", "-3"], {}, "--horizon"),
    (["train", "nope"], {}, "'nope' is not one of 'repurchase'"),
    (["score", "--lead-days", "-1"], {}, "--lead-days"),
    (["score", "--as-of", "notadate"], {}, "--as-of notadate"),
    (["promote", "repurchase"], {}, "cadence train repurchase"),
    (["rollback", "repurchase", "--reason", "x"], {}, "cadence train repurchase"),
    (["run", "train", "--horizn", "7"], {}, "--horizn: unknown parameter"),
    (["status"], {"CADENCE_ONLINE_STORE": "foo"}, "CADENCE_ONLINE_STORE=foo"),
    (["status"], {"CADENCE_CONF": "/nonexistent/conf"}, "CADENCE_CONF=/nonexistent/conf"),
    (["data", "validate", "/nonexistent/raw"], {}, "/nonexistent/raw"),
    (["data", "validate", "{logs}/raw"], {}, "{logs}/raw/orders.parquet: unreadable Parquet"),
    (_import("good.csv", "--timezone", "Mars/Olympus"), {}, "--timezone 'Mars/Olympus'"),
    (_import("good.csv", "--as-of", "30.06.2025"), {}, "--as-of 30.06.2025: not a date"),
    (_import("good.csv", "--as-of", "2025-01-02"), {}, "line 3: when = '2025-01-03 11:00': after"),
    (_import("future.csv"), {}, "line 3: when = '2999-01-03': in the future"),
    (_import("dst-gap.csv", "--timezone", "Europe/Berlin"), {}, "does not exist in Europe/Berlin"),
    (_import("two-forms.csv"), {}, "read as %d/%m/%Y or as %m/%d/%Y"),
    (_import("mixed-forms.csv"), {}, "column 'when' mixes date forms"),
    (_import("not-iso.csv"), {}, "ISO 8601; name another form with --timestamp-format"),
    (_import("not-iso.csv", "--timestamp-format", "%d.%m.%Y"), {}, "--timestamp-format %d.%m.%Y"),
    (_import("amount-0.csv"), {}, "paid = 'inf': not a finite number"),
    (_import("amount-1.csv"), {}, "paid = '-inf': not a finite number"),
    (_import("amount-2.csv"), {}, "paid = 'nan': not a finite number"),
    (_import("amount-3.csv"), {}, "paid = 'NaN': not a finite number"),
    (_import("amount-4.csv"), {}, "paid = '1,234.50': a thousands separator"),
    (_import("amount-5.csv"), {}, "paid = '1.234,50': a thousands separator"),
    (_import("amount-6.csv"), {}, "paid = '1 234': a thousands separator"),
    (_import("amount-7.csv"), {}, "a decimal comma; pass --decimal-comma"),
    (_import("amount-8.csv"), {}, "paid = '$12': a currency symbol"),
    (_import("european.csv", "--decimal-comma"), {}, "line 3: paid = '1.234,50': a thousands"),
    (_import("zero.csv", "--quantity", "n"), {}, "quantity 0"),
    (_import("duplicates.csv"), {}, "line 3: repeats line 2 exactly"),
    (
        _import("ids.csv", "--order-id", "nr"),
        {},
        "line 3: who = 'B': differs from line 2, the first line of order 1",
    ),
    (
        ["data", "import-orders", "{logs}/good.csv", "--customer", "who", "--timestamp", "when"],
        {},
        "--amount COLUMN (each row's amount) or --unit-price COLUMN",
    ),
    (_import("priced.csv", "--unit-price", "price"), {}, "--amount and --unit-price: give one"),
    (_priced("priced.csv"), {}, "--unit-price needs --quantity"),
    (_priced("priced.csv", "--quantity", "n"), {}, "line 3: price = 'inf': not a finite number"),
    (_priced("good.csv", "--quantity", "paid"), {}, "--unit-price 'price': no such column"),
    (_import("ids.csv", "--cancelled", "gone"), {}, "line 3: gone = 'maybe': not a yes/no value"),
    (_import("ids.csv", "--cancelled", "nope"), {}, "--cancelled 'nope': no such column"),
    (_import("good.csv", "--cancelled-prefix", "C"), {}, "--cancelled-prefix marks order ids"),
    (_import("broken.parquet"), {}, "{logs}/broken.parquet: not a readable Parquet file"),
    (_import("empty.csv"), {}, "{logs}/empty.csv: the file is empty"),
    (_import("blank.csv"), {}, "{logs}/blank.csv: the file is empty"),
    (_import("empty.parquet"), {}, "{logs}/empty.parquet: the file is empty"),
    (_import("nothing-here.csv"), {}, "{logs}/nothing-here.csv: no such file"),
    (_import("notes.txt"), {}, "expected a .csv, .parquet or .xlsx file"),
    (
        _import("latin-1.csv", "--encoding", "utf-8"),
        {},
        "{logs}/latin-1.csv: line 2 is not valid utf-8 text",
    ),
    (_import("good.csv", "--encoding", "klingon"), {}, "--encoding 'klingon': unknown encoding"),
    (_import("good.csv", "--delimiter", ";;"), {}, "--delimiter ';;': expected one character"),
    (_import("good.csv", "--sheet", "Orders"), {}, "--sheet applies to Excel files only"),
    (_import("good.csv", "--timestamp-format", "%Q"), {}, "'%Q': 'Q' is a bad directive"),
    (_import("short-line.csv"), {}, "line 3: 2 fields, the header has 3"),
    (
        ["data", "import-orders", "{logs}/good.csv", "--customer", "client"]
        + ["--timestamp", "when", "--amount", "paid", "--replace"],
        {},
        "--customer 'client': no such column",
    ),
    (["evaluate", "repurchase", "--backtest", "0"], {}, "--backtest 0: a backtest needs 1 or more"),
    (["keys", "create", "--role", "owner"], {}, "role 'owner': expected one of service"),
    (["keys", "revoke", "abc123"], {}, "no live key 'abc123'"),
    (["serve", "--workers", "2"], {}, "--workers 2: more than one process needs PostgreSQL"),
    (["serve", "--today", "someday"], {}, "--today someday: expected YYYY-MM-DD or 'scores'"),
    (["consolidate", "--date", "2025-13-01"], {}, "--date 2025-13-01: expected YYYY-MM-DD"),
    (["merge", "simulate", "--days", "7"], {}, "run `cadence features build` first"),
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """The order logs the import cases read, and a raw folder whose orders file is broken."""
    folder = tmp_path_factory.mktemp("logs")
    for name, content in LOGS.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (folder / name).write_bytes(data)
    (folder / "raw").mkdir()
    (folder / "raw" / "orders.parquet").write_bytes(b"")
    return folder


@pytest.mark.parametrize(("args", "env", "said"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_exits_2_names_the_fault_and_changes_nothing(home, logs, args, env, said):
    args = [a.replace("{logs}", str(logs)) for a in args]
    said = said.replace("{logs}", str(logs))
    before = _bytes(home)
    r = runner.invoke(app, args, env={"CADENCE_HOME": str(home), **env})
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert said in r.output.replace("\n", " "), r.output
    assert "Traceback" not in r.output
    assert _bytes(home) == before


def test_a_workspace_that_is_a_file_is_named(tmp_path):
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    r = runner.invoke(app, ["status"], env={"CADENCE_HOME": str(file)})
    assert r.exit_code == 2 and f"CADENCE_HOME={file} exists and is not a folder" in r.output
    assert file.read_text() == "x"


def test_features_docs_outside_the_repository_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["features", "docs"], env={"CADENCE_HOME": str(tmp_path / "h")})
    assert r.exit_code == 2 and "folder docs does not exist" in r.output
    assert list(tmp_path.iterdir()) == []


def test_generate_never_replaces_a_folder_of_other_files_unless_forced(tmp_path):
    env = {"CADENCE_HOME": str(tmp_path / "h")}
    small = ["--users", "60", "--days", "20", "--seed", "1"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = runner.invoke(app, ["world", "generate", *small, "--out", str(mine)], env=env)
    assert r.exit_code == 2 and "notes.txt" in r.output and "--force" in r.output
    assert (mine / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "truth").exists()

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    r = runner.invoke(app, ["world", "generate", *small, "--out", str(a_file)], env=env)
    assert r.exit_code == 2 and "is a file" in r.output and a_file.read_text() == "x"

    # A folder Cadence wrote is replaced without asking; a foreign one only with --force.
    ours = tmp_path / "ours"
    assert (
        runner.invoke(app, ["world", "generate", *small, "--out", str(ours)], env=env).exit_code
        == 0
    )
    assert (
        runner.invoke(app, ["world", "generate", *small, "--out", str(ours)], env=env).exit_code
        == 0
    )
    r = runner.invoke(app, ["world", "generate", *small, "--out", str(mine), "--force"], env=env)
    assert r.exit_code == 0, r.output
    assert (mine / "manifest.json").exists() and not (mine / "notes.txt").exists()


def test_importing_over_a_simulated_world_needs_replace_and_takes_its_truth(home, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(home, work)
    log = tmp_path / "log.csv"
    log.write_text("who,when,paid\nA,2025-01-02,3.5\nB,2025-01-03,2\n")
    args = ["data", "import-orders", str(log), "--customer", "who", "--timestamp", "when"]
    args += ["--amount", "paid"]
    env = {"CADENCE_HOME": str(work)}
    before = _bytes(work)
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 2 and "holds a simulated world" in r.output and "--replace" in r.output
    assert _bytes(work) == before
    r = runner.invoke(app, [*args, "--replace"], env=env)
    assert r.exit_code == 0, r.output
    assert not (work / "truth").exists() and (work / "raw" / "orders.parquet").exists()
    # An import over an import needs no --replace.
    assert runner.invoke(app, args, env=env).exit_code == 0
