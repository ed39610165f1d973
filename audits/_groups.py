"""Who is compared: each row's group under every grouping an audit reads.

A grouping is a sensitive attribute (never a model input), a proxy (a place attribute a model
may read, through which a sensitive attribute can act), or an intersection of attributes.
A shopper whose attribute is missing is in the group "unknown", counted like any other. An
attribute the data lacks entirely (an imported order log has no gender) is reported as
missing, never as a grouping of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from cadence.audits._fairness import UNKNOWN

SEPARATOR = " × "


@dataclass
class Groupings:
    """Row labels per grouping, each grouping's kind, and the groupings that cannot be formed
    (with the reason)."""

    labels: dict[str, pd.Series] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def intersection_name(attributes: Sequence[str]) -> str:
    return SEPARATOR.join(attributes)


def groupings(
    users: pd.DataFrame | None,
    user_ids: pd.Series,
    *,
    sensitive: Sequence[str],
    proxies: Sequence[str],
    intersections: Sequence[Sequence[str]],
) -> Groupings:
    """Labels for the rows of `user_ids`, from the users table (None when there is none)."""
    out = Groupings()
    ids = pd.Series(user_ids).astype("string").reset_index(drop=True)
    table = None if users is None else users.assign(user_id=users.user_id.astype("string"))
    single: dict[str, pd.Series] = {}
    for kind, names in (("sensitive", sensitive), ("proxy", proxies)):
        for name in names:
            out.kinds[name] = kind
            if table is None:
                out.missing[name] = "the data has no users table"
            elif name not in table.columns:
                out.missing[name] = f"the users table has no column {name!r}"
            elif table[name].isna().all():
                out.missing[name] = f"column {name!r} of the users table is empty"
            else:
                values = table.set_index("user_id")[name]
                values = values[~values.index.duplicated()].astype("string")
                single[name] = ids.map(values).fillna(UNKNOWN).rename(name)
                out.labels[name] = single[name]
    for parts in intersections:
        name = intersection_name(parts)
        out.kinds[name] = "intersection"
        absent = [p for p in parts if p not in single]
        if absent:
            out.missing[name] = f"{', '.join(absent)} missing"
            continue
        label = single[parts[0]]
        for p in parts[1:]:
            label = label + SEPARATOR + single[p]
        out.labels[name] = label.rename(name)
    return out
