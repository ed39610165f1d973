"""Bad input, table-driven: each case exits 2 with one message naming the option, file or
setting at fault, and leaves the workspace's bytes as they were."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cadence.cli.app import app

pytestmark = pytest.mark.e2e

runner = CliRunner()


def _bytes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "cadence.log"
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A small generated world: bad commands must leave it untouched."""
    home = tmp_path_factory.mktemp("errors")
    args = ["world", "generate", "--users", "150", "--days", "35", "--seed", "4"]
    assert runner.invoke(app, args, env={"CADENCE_HOME": str(home)}).exit_code == 0
    return home


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
]


@pytest.mark.parametrize(("args", "env", "said"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_exits_2_names_the_fault_and_changes_nothing(home, args, env, said):
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
