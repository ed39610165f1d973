"""The decisions in conf/: each file a typed model; a bad file names its key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.flows.conf import Conf, ConfError, default_folder

pytestmark = pytest.mark.unit


def _folder(tmp_path: Path, name: str, text: str) -> Path:
    for f in default_folder().glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def test_the_shipped_defaults_are_valid_and_hold_the_numbers_code_used_to_hard_code():
    conf = Conf(default_folder())
    conf.check()
    assert conf.models.training.min_buyers == 500 and conf.models.training.n_jobs == 2
    assert conf.models.scoring.active_days == 365
    assert conf.models.promotion.gates == ["beats_champion", "calibrated", "fairness_audit"]
    assert conf.audits.thresholds.demographic_parity_ratio == 0.8
    assert conf.audits.thresholds.equalized_odds_difference == 0.10
    assert conf.audits.thresholds.calibration_gap == 0.05
    assert conf.audits.resamples == 1000 and conf.audits.mitigation.policy == "block"
    assert conf.features.rows_per_batch == 1_000_000
    assert conf.flows.schedules.score == "0 5 * * *"


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("models", "training:\n  n_jobz: 2\n", "training.n_jobz: unknown key"),
        (
            "models",
            "training:\n  n_jobs: two\n",
            "training.n_jobs: Input should be a valid integer",
        ),
        ("models", "scoring:\n  bands: {medium: 0.7, high: 0.6}\n", "needs medium < high"),
        ("models", "scoring:\n  drivers: shap\n", "scoring.drivers: Input should be 'treeshap'"),
        ("world", "users: 0\n", "users: Input should be greater than 0"),
        ("flows", "task_runner: ray\n", "task_runner: Input should be 'threads' or 'dask'"),
        ("features", "- a list\n", "expected a mapping of keys"),
        ("features", "snapshots: {every_days: [\n", "not valid YAML"),
        ("audits", "mitigation: {policy: warn}\n", "mitigation.policy: Input should be 'block'"),
        (
            "audits",
            "intersections: [[gender, income]]\n",
            "must join two or more of sensitive + proxies",
        ),
        ("audits", "thresholds: {calibration_gap: 2}\n", "less than or equal to 1"),
    ],
)
def test_a_bad_file_stops_with_file_key_and_reason(tmp_path, name, text, said):
    conf = Conf(_folder(tmp_path, name, text))
    with pytest.raises(ConfError) as exc:
        conf.check()
    assert str(exc.value).startswith(f"{tmp_path / name}.yaml: ")
    assert said in str(exc.value)


def test_a_missing_folder_or_file_is_named(tmp_path):
    with pytest.raises(ConfError, match="does not exist"):
        Conf(tmp_path / "nope")
    folder = _folder(tmp_path, "world", "users: 10\n")
    (folder / "flows.yaml").unlink()
    with pytest.raises(ConfError, match=r"flows\.yaml: no such file"):
        Conf(folder).check()


def test_a_gate_named_in_conf_that_nobody_registered_is_an_error():
    from cadence.models._gates import UnknownGate, check_gates

    with pytest.raises(UnknownGate, match="fairness_review"):
        check_gates(["beats_champion", "fairness_review"])
