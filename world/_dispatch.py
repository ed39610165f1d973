"""Dispatch waves: each node ships in waves with cut-off times and a hard capacity per wave.

A parcel joins the first wave whose cut-off it reaches in time (`WAVE_LEAD_HOURS` before it) and
that still has room; parcels past a wave's capacity wait for the next one, in order of arrival,
so a festival's backlog carries over into the following days. A dispatch batch is one (node,
wave) with at least one parcel: its handling cost (`BATCH_COST`) is paid once, whatever it holds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cadence.world import _params as P
from cadence.world._emit import Lookup, to_table

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
# How many days ahead the waves' fill is kept: a backlog longer than this is an error.
_RING = 60


class Dispatch:
    """The waves of every node, with the capacity each has left, from `start_us` on."""

    def __init__(self, kind: np.ndarray, daily_capacity: np.ndarray, start_us: int) -> None:
        self.width = max(len(c) for c in P.WAVE_CUTOFFS)
        n = kind.size
        self.kind = kind
        self.cutoff = np.full((n, self.width), np.nan)
        self.capacity = np.zeros((n, self.width), dtype=np.int64)
        for node, k in enumerate(kind):
            hours = P.WAVE_CUTOFFS[k]
            self.cutoff[node, : len(hours)] = hours
            self.capacity[node, : len(hours)] = -(-int(daily_capacity[node]) // len(hours))
        self.fill = np.zeros((n, _RING, self.width), dtype=np.int64)
        self.start_us = start_us
        self.day = 0

    def assign(self, day: int, node: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """The wave (day * width + wave) each parcel of `day` leaves with, ordered at `t_us`."""
        for d in range(self.day, day):
            self.fill[:, d % _RING] = 0  # that day's waves have left
        self.day = day
        hour = (t_us - (self.start_us + day * DAY_US)) / HOUR_US
        reach = self.cutoff[node] - P.WAVE_LEAD_HOURS[self.kind[node]][:, None]
        ok = np.nan_to_num(reach, nan=-np.inf) >= hour[:, None]
        earliest = np.where(
            ok.any(axis=1), day * self.width + ok.argmax(axis=1), (day + 1) * self.width
        )
        wave = np.full(node.size, -1, dtype=np.int64)
        pending = np.lexsort((t_us, node))  # first come, first served at each node
        slot = int(earliest.min()) if node.size else 0
        while pending.size:
            d, w = divmod(slot, self.width)
            if d - day >= _RING:
                raise RuntimeError(f"dispatch backlog longer than {_RING} days on day {day}")
            now = pending[earliest[pending] <= slot]
            if now.size:
                at = node[now]
                first = np.r_[True, at[1:] != at[:-1]]
                rank = np.arange(at.size) - np.maximum.accumulate(
                    np.where(first, np.arange(at.size), 0)
                )
                take = rank < self.capacity[at, w] - self.fill[at, d % _RING, w]
                wave[now[take]] = slot
                np.add.at(self.fill, (at[take], d % _RING, w), 1)
                pending = pending[wave[pending] < 0]
            slot += 1
        return wave

    def cutoff_us(self, node: np.ndarray, wave: np.ndarray) -> np.ndarray:
        """The cut-off instant of each (node, wave)."""
        d, w = np.divmod(wave, self.width)
        return self.start_us + d * DAY_US + (self.cutoff[node, w] * HOUR_US).astype(np.int64)

    def table(self, lookups: dict[str, pa.Array]) -> pa.Table:
        node, w = np.nonzero(self.capacity)
        return to_table(
            "dispatch_waves",
            {
                "node_id": Lookup("node", node),
                "wave": w + 1,
                "cutoff_minute": (self.cutoff[node, w] * 60).astype(np.int64),
                "capacity": self.capacity[node, w],
                "batch_cost": P.BATCH_COST[self.kind[node]],
            },
            lookups,
        )
