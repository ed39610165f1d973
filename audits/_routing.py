"""The audit's routing section: did optimising move cost or delay onto some groups?

Per group (destination region and city tier, and the shoppers' sensitive attributes), under
`nearest` and under the router, over the same replayed orders: the next-day rate, the mean
delivery days and the cost per order. The gate reads the largest fall in a group's next-day
rate from `nearest` to the router, among groups with at least `min_orders` orders.
"""

from __future__ import annotations

import pandas as pd


def routing_groups(
    outcomes: dict[str, pd.DataFrame],
    attributes: pd.DataFrame,
    columns: list[str],
    *,
    strategies: tuple[str, str] = ("nearest", "optimal"),
    min_orders: int = 30,
) -> pd.DataFrame:
    """One row per (attribute, group, strategy). `attributes` holds `order_id` and `columns`."""
    rows = []
    for s in strategies:
        f = outcomes[s]
        f = f[f.assigned].merge(attributes, on="order_id", how="left")
        for col in columns:
            g = f.groupby(f[col].fillna("unknown").astype(str))
            table = pd.DataFrame(
                {
                    "orders": g.size(),
                    "next_day_rate": g.next_day.mean(),
                    "mean_delivery_days": g.days.mean(),
                    "cost_per_order": g.cost.mean(),
                }
            ).reset_index(names="group")
            table.insert(0, "attribute", col)
            table.insert(2, "strategy", s)
            rows.append(table)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    out["reported"] = out.orders >= min_orders
    return out


def worst_next_day_drop(groups: pd.DataFrame, base: str, router: str) -> tuple[float, str]:
    """The largest fall in a reported group's next-day rate from `base` to `router`."""
    wide = groups[groups.reported].pivot_table(
        index=["attribute", "group"], columns="strategy", values="next_day_rate"
    )
    if wide.empty or base not in wide or router not in wide:
        return 0.0, "no group large enough"
    drop = (wide[base] - wide[router]).dropna()
    if drop.empty:
        return 0.0, "no group large enough"
    (attribute, group), value = drop.idxmax(), float(drop.max())
    if value <= 0:
        return 0.0, "no group's next-day rate fell"
    return value, f"{attribute}={group}"


def routing_section(evaluation: dict | None, *, limit: float) -> dict | None:
    """The audit's routing section from a saved `route evaluate` read-out (None: none saved):
    per group, nearest beside the router, and the largest fall in a next-day rate against
    `limit` (routing's promotion gate)."""
    if not evaluation:
        return None
    audit = evaluation["audit"]
    first, last = evaluation["days"]
    drop = float(audit["max_next_day_drop"])
    rows = sorted(
        (g for g in audit["groups"] if g.get("reported", True)),
        key=lambda g: (g["attribute"], str(g["group"]), g["strategy"]),
    )
    return {
        "status": "PASS" if drop <= limit else "WARN",
        "note": (
            f"{evaluation['model']} replayed {first} to {last} against nearest; the largest "
            f"fall in a group's next-day rate is {drop:.3f} ({audit['worst_group']}; routing's "
            f"gate allows {limit})"
        ),
        "groups": rows,
    }
