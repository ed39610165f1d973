"""The evaluation's pictures: a calibration curve and a gain chart, every scorer on one axes."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cadence.models._metrics import calibration_curve, gain_curve


def curves(y: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, dict[str, list]]:
    """The points behind both plots, per scorer (logged as JSON beside the PNGs)."""
    return {
        name: {
            "calibration": calibration_curve(y, p),
            "gain": gain_curve(y, p),
        }
        for name, p in scores.items()
    }


def calibration_figure(points: dict[str, dict[str, list]], horizon_days: int) -> Figure:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for name, c in points.items():
        pred, seen, _ = zip(*c["calibration"], strict=True)
        ax.plot(pred, seen, marker="o", label=name)
    ax.set_xlabel("predicted probability (10 bins)")
    ax.set_ylabel(f"observed share ordering within {horizon_days} days")
    ax.set_title("Calibration on the test slice")
    ax.legend()
    return fig


def gain_figure(points: dict[str, dict[str, list]]) -> Figure:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    for name, c in points.items():
        share, reached = zip(*c["gain"], strict=True)
        ax.plot((0, *share), (0, *reached), label=name)
    ax.set_xlabel("share of shoppers contacted (best scores first)")
    ax.set_ylabel("share of repurchases reached")
    ax.set_title("Gain chart on the test slice")
    ax.legend()
    return fig
