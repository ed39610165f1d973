"""The wheel: built from the checkout, installed in a fresh environment away from it, it runs the
first stages from any folder with nothing but its own files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = {
    "cadence/conf/world.yaml",
    "cadence/conf/flows.yaml",
    "cadence/features/feature_repo/feature_store.yaml",
    "cadence/models/_model_code.py",
    "cadence/conf/serving.yaml",
    "cadence/serving/migrations/env.py",
    "cadence/serving/migrations/versions/0001_initial.py",
}


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )


def _source_copy(target: Path) -> Path:
    """The files git would hold (tracked, and new ones not ignored), copied: building in the
    checkout would leave build/ and an egg-info in a tree others work in, and a stale build/lib
    would put modules deleted since into the wheel."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not there
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _source_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    # Without build isolation, so no package index is needed: the environment's setuptools
    # builds it (`make test` installs one that can).
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--quiet", "-w", out, src]
    )
    assert built.returncode == 0, (
        f"{built.stderr[-3000:]}\nthe build needs setuptools>=70.1 in this environment: "
        f"{sys.executable} -m pip install 'setuptools>=70.1'"
    )
    [whl] = out.glob("cadence-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A new environment holding the wheel's `cadence` and, through a path in a .pth file, the
    dependencies this environment already has. A plain path line does not run the .pth files
    of the folder it adds, so the editable install's finder stays out: only the wheel's
    `cadence` can be imported."""
    env = tmp_path_factory.mktemp("venv")
    made = _run([sys.executable, "-m", "venv", "--without-pip", env])
    assert made.returncode == 0, made.stderr
    python = env / "bin" / "python"
    installed = _run(
        [sys.executable, "-m", "pip", "--python", python, "install"]
        + ["--no-deps", "--no-index", "--quiet", wheel]
    )
    assert installed.returncode == 0, installed.stderr
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    (Path(site.stdout.strip()) / "_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    return env


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything pointing back into the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CADENCE_", "PYTHON", "VIRTUAL_ENV", "MLFLOW_", "PREFECT_"))
    }
    return {**env, **extra}


def test_the_wheel_holds_its_data_files_and_one_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert PACKAGED <= set(names), PACKAGED - set(names)
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"cadence"}
    # RECORD agrees with the archive: every file listed, nothing else.
    record = next(n for n in names if n.endswith(".dist-info/RECORD"))
    listed = {line.split(",")[0] for line in zipfile.ZipFile(wheel).read(record).decode().split()}
    assert listed == set(names)


def test_the_installed_wheel_runs_the_first_stages_outside_the_checkout(venv, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env(CADENCE_HOME=str(work / "home"))
    where = _run(
        [venv / "bin" / "python", "-c", "import cadence; print(cadence.__file__)"],
        cwd=work,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    imported = Path(where.stdout.strip()).resolve()
    assert imported.is_relative_to(venv.resolve()), imported
    assert not imported.is_relative_to(ROOT)
    cadence = venv / "bin" / "cadence"
    for args in (
        ["world", "generate", "--users", "200", "--days", "40", "--seed", "3"],
        ["features", "build"],
        ["features", "apply"],
        # The service database is migrated from the wheel's own migrations.
        ["keys", "create", "--role", "admin"],
    ):
        r = _run([cadence, *args], cwd=work, env=env)
        assert r.returncode == 0, f"cadence {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    home = work / "home"
    assert (home / "raw" / "orders.parquet").is_file()
    assert (home / "features" / "manifest.json").is_file()
    assert (home / "feast" / "registry.db").is_file()
    assert (home / "serving.db").is_file()
