"""Promotion gates: the checks a challenger must pass to become champion.

A gate is a function `Candidate -> GateResult`, registered by name with `@register_gate`.
`conf/models.yaml` lists the gates promotion runs; a listed gate that no module registered is
an error (`UnknownGate`), so a gate cannot be skipped because its module was not imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cadence.models._metrics import classification_metrics
from cadence.models._train import Trained


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    detail: str


@dataclass
class Candidate:
    """What a gate sees: the challenger and the champion, evaluated on the same test rows."""

    name: str
    version: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    test_window: str
    conf: dict[str, Any]
    # The challenger's fairness audit (verdict, checks not passing, report), when the gate
    # list asks for one; the promote step attaches it.
    audit: dict[str, Any] | None = None


def candidate(
    *,
    name: str,
    version: str,
    challenger: Trained,
    champion: Trained | None,
    champion_version: str | None,
    test: pd.DataFrame,
    conf: dict[str, Any],
) -> Candidate:
    """Scores the challenger and the champion on the challenger's labelled test rows, so the
    gates compare the two on the same window."""
    y = test[f"y_{challenger.horizon_days}d"].to_numpy(int)
    metrics = classification_metrics(y, challenger.predict(test).probability.to_numpy())
    champion_metrics = None
    if champion is not None:
        champion_metrics = classification_metrics(y, champion.predict(test).probability.to_numpy())
    return Candidate(
        name=name,
        version=version,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        test_window=challenger.split.window("test"),
        conf=conf,
    )


Gate = Callable[[Candidate], GateResult]
GATES: dict[str, Gate] = {}


class UnknownGate(ValueError):
    """A gate named in the configuration is not registered."""


def register_gate(name: str) -> Callable[[Gate], Gate]:
    """Adds a check promotion can run (the fairness audit registers one)."""

    def add(gate: Gate) -> Gate:
        GATES[name] = gate
        return gate

    return add


@register_gate("beats_champion")
def _beats_champion(c: Candidate) -> GateResult:
    margin = float(c.conf["margin_roc_auc"])
    auc = c.metrics["roc_auc"]
    if c.champion_metrics is None:
        return GateResult("beats_champion", True, f"no champion yet; ROC AUC {auc:.4f}")
    best = c.champion_metrics["roc_auc"]
    ok = auc >= best + margin
    return GateResult(
        "beats_champion",
        ok,
        f"ROC AUC {auc:.4f} vs champion v{c.champion_version} {best:.4f} on {c.test_window} "
        f"(needs +{margin})",
    )


@register_gate("calibrated")
def _calibrated(c: Candidate) -> GateResult:
    limit = float(c.conf["max_ece"])
    value = c.metrics["ece"]
    return GateResult("calibrated", value <= limit, f"ECE {value:.4f} (at most {limit})")


def check_gates(names: list[str]) -> None:
    """UnknownGate when any of `names` is not registered."""
    unknown = [n for n in names if n not in GATES]
    if unknown:
        raise UnknownGate(
            f"promotion.gates names {unknown}, which no module registered; "
            f"registered: {sorted(GATES)}"
        )


def run_gates(candidate: Candidate, names: list[str]) -> list[GateResult]:
    """Runs the named gates, in order; UnknownGate before any runs if one is not registered."""
    check_gates(names)
    return [GATES[n](candidate) for n in names]
