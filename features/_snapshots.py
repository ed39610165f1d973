"""Snapshot times: parsing what the user asks for, and the default grid."""

from __future__ import annotations

import datetime as dt
import re

_STEP = re.compile(r"^(\d+)d$")


def parse_snapshots(spec: str) -> list[dt.datetime]:
    """`START:END:STEPd` (inclusive) or a comma-separated list of dates or ISO timestamps."""
    spec = spec.strip()
    if spec.count(":") == 2 and "T" not in spec:
        start_s, end_s, step_s = spec.split(":")
        m = _STEP.match(step_s)
        if not m or int(m.group(1)) < 1:
            raise ValueError(f"snapshot step '{step_s}': expected a number of days like 7d")
        start, end = _parse(start_s), _parse(end_s)
        if end < start:
            raise ValueError(f"snapshot range {spec}: end is before start")
        step = dt.timedelta(days=int(m.group(1)))
        out = []
        while start <= end:
            out.append(start)
            start += step
        return out
    return sorted({_parse(part) for part in spec.split(",") if part.strip()})


def default_grid(
    start: dt.datetime,
    end: dt.datetime,
    *,
    every_days: int,
    first_after_days: int,
    horizon_days: int,
) -> list[dt.datetime]:
    out = []
    t = _midnight(start) + dt.timedelta(days=first_after_days)
    while t + dt.timedelta(days=horizon_days) <= end:
        out.append(t)
        t += dt.timedelta(days=every_days)
    if end not in out:
        out.append(end)
    return out


def check_range(snapshots: list[dt.datetime], start: dt.datetime, end: dt.datetime) -> None:
    for s in snapshots:
        if not start < s <= end:
            raise ValueError(
                f"snapshot {s.isoformat()} is outside the data's range "
                f"({start.isoformat()} .. {end.isoformat()}]"
            )


def _parse(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"snapshot '{text}': not a date or ISO timestamp") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _midnight(t: dt.datetime) -> dt.datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)
