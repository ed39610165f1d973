"""How a step reports progress: a callback taking one `Progress` event (steps never print)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`step` is what is running ("simulate", "build", "fit", ...); `done` of `total` counts
    its units where it has them (days, batches, stages)."""

    step: str
    message: str
    done: int | None = None
    total: int | None = None


Report = Callable[[Progress], None]


def silent(_: Progress) -> None:
    """The default: report nothing."""
