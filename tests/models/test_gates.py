"""Promotion gates and the registry's promote and rollback, directly, on a few rows built here."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from cadence.models import _gates
from cadence.models._gates import Candidate, GateResult, UnknownGate, register_gate, run_gates
from cadence.models._registry import (
    CHALLENGER,
    CHAMPION,
    RollbackError,
    alias_version,
    configure,
    promote,
    rollback,
)

pytestmark = pytest.mark.unit

NAME = "repurchase"
CONF = {"margin_roc_auc": 0.002, "max_ece": 0.02}


def _candidate(
    auc: float = 0.75,
    ece: float = 0.01,
    *,
    version: str = "2",
    champion: str | None = "1",
    champion_auc: float | None = 0.74,
    conf: dict | None = None,
) -> Candidate:
    return Candidate(
        name=NAME,
        version=version,
        metrics={"roc_auc": auc, "ece": ece},
        champion_version=champion,
        champion_metrics=None if champion_auc is None else {"roc_auc": champion_auc},
        test_window="2025-07-09..2025-07-30",
        conf=CONF if conf is None else conf,
    )


@pytest.fixture
def gates(monkeypatch) -> dict:
    """The registry of gates, restored after the test (registering is global)."""
    table = dict(_gates.GATES)
    monkeypatch.setattr(_gates, "GATES", table)
    return table


def test_beats_champion_passes_without_a_champion():
    [r] = run_gates(_candidate(0.6, champion=None, champion_auc=None), ["beats_champion"])
    assert r == GateResult("beats_champion", True, "no champion yet; ROC AUC 0.6000")


def test_beats_champion_needs_the_margin_over_the_champion():
    best, margin = 0.74, CONF["margin_roc_auc"]
    at = best + margin  # computed as the gate computes it
    assert run_gates(_candidate(at, champion_auc=best), ["beats_champion"])[0].passed
    below = float(np.nextafter(at, 0))
    [r] = run_gates(_candidate(below, champion_auc=best), ["beats_champion"])
    assert not r.passed
    assert r.detail == (
        "ROC AUC 0.7420 vs champion v1 0.7400 on 2025-07-09..2025-07-30 (needs +0.002)"
    )
    # Better than the champion, but by less than the margin: refused.
    [r] = run_gates(_candidate(best + margin / 2, champion_auc=best), ["beats_champion"])
    assert not r.passed
    # A negative margin lets a slightly worse challenger through (the CLI test's "anyway").
    loose = {**CONF, "margin_roc_auc": -0.01}
    assert run_gates(_candidate(0.735, champion_auc=best, conf=loose), ["beats_champion"])[0].passed


def test_calibrated_passes_at_the_limit_and_fails_above_it():
    limit = CONF["max_ece"]
    [r] = run_gates(_candidate(ece=limit), ["calibrated"])
    assert r == GateResult("calibrated", True, "ECE 0.0200 (at most 0.02)")
    assert not run_gates(_candidate(ece=float(np.nextafter(limit, 1))), ["calibrated"])[0].passed


def test_an_unregistered_gate_stops_promotion_before_any_gate_runs(gates):
    ran = []

    @register_gate("spy")
    def spy(c: Candidate) -> GateResult:
        ran.append(c.version)
        return GateResult("spy", True, "")

    with pytest.raises(UnknownGate, match=r"\['no_such_gate'\], which no module registered"):
        run_gates(_candidate(), ["spy", "no_such_gate", "beats_champion"])
    assert ran == []


def test_a_registered_gate_runs_when_named_and_only_then(gates):
    ran = []

    @register_gate("fairness")
    def fairness(c: Candidate) -> GateResult:
        ran.append(c.version)
        return GateResult("fairness", False, "gap 0.12")

    results = run_gates(_candidate(), ["beats_champion", "calibrated"])
    assert [r.gate for r in results] == ["beats_champion", "calibrated"] and ran == []
    results = run_gates(_candidate(), ["calibrated", "fairness"])
    assert [(r.gate, r.passed) for r in results] == [("calibrated", True), ("fairness", False)]
    assert ran == ["2"]


@pytest.fixture
def registry(tmp_path) -> MlflowClient:
    """An empty SQLite model registry in tmp_path holding `repurchase` versions 1-3 (their
    source is a folder nobody loads: promote and rollback only move aliases and tags)."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    configure(tmp_path, None)
    client = MlflowClient()
    client.create_registered_model(NAME)
    source = tmp_path / "model"
    source.mkdir()
    for _ in range(3):
        client.create_model_version(NAME, source=Path(source).as_uri())
    try:
        yield client
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _passed(*gates: str) -> list[GateResult]:
    return [GateResult(g, True, "ok") for g in gates]


def test_promote_makes_champion_only_when_every_gate_passed(registry):
    first = _candidate(version="1", champion=None, champion_auc=None)
    registry.set_registered_model_alias(NAME, CHALLENGER, "1")
    assert promote(first, _passed("beats_champion", "calibrated"), "first")
    assert alias_version(NAME, CHAMPION) == "1" and alias_version(NAME, CHALLENGER) is None
    tags = registry.get_model_version(NAME, "1").tags
    assert tags["previous_champion"] == ""
    assert tags["promotion_reason"] == "first | beats_champion: pass (ok); calibrated: pass (ok)"

    refused = [GateResult("beats_champion", True, "ok"), GateResult("calibrated", False, "high")]
    registry.set_registered_model_alias(NAME, CHALLENGER, "2")
    assert not promote(_candidate(version="2"), refused, None)
    assert alias_version(NAME, CHAMPION) == "1" and alias_version(NAME, CHALLENGER) == "2"
    tags = registry.get_model_version(NAME, "2").tags
    assert tags["promotion_refused_reason"] == "beats_champion: pass (ok); calibrated: FAIL (high)"
    assert "promoted_at" not in tags and "previous_champion" not in tags


def test_rollback_walks_back_through_champions_and_stops_at_the_first(registry):
    with pytest.raises(RollbackError, match="no champion"):
        rollback(NAME, "nothing yet")
    promote(_candidate(version="1", champion=None, champion_auc=None), _passed("g"), None)
    promote(_candidate(version="2", champion="1"), _passed("g"), None)
    promote(_candidate(version="3", champion="2"), _passed("g"), None)
    assert [registry.get_model_version(NAME, v).tags["previous_champion"] for v in "123"] == [
        "",
        "1",
        "2",
    ]
    assert alias_version(NAME, CHAMPION) == "3"

    assert rollback(NAME, "bad week") == ("3", "2")
    assert alias_version(NAME, CHAMPION) == "2"
    v3 = registry.get_model_version(NAME, "3").tags
    assert v3["rollback_reason"] == "bad week" and "rolled_back_at" in v3
    assert registry.get_model_version(NAME, "2").tags["restore_reason"] == "bad week"
    assert rollback(NAME, "worse") == ("2", "1")
    assert alias_version(NAME, CHAMPION) == "1"
    with pytest.raises(RollbackError, match="v1 is the first champion"):
        rollback(NAME, "again")
    assert alias_version(NAME, CHAMPION) == "1"
