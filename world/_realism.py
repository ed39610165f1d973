"""How real a world's behaviour is: the realism table `cadence world generate` prints.

A world is a fair judge only when its shoppers behave like a real shop's: many buy once, few stay
active month after month, replenishment is noisy, baskets hold several items, some parcels are
late, and the oracle, though exact, is far from clairvoyant. Each row measures one of these on a
generated world's raw tables (and its oracle) beside a target range and the figures of real logs.

Measures are taken on whole days, as they reproduce the CDNOW figures the references quote: a
customer's 12 months are the 365 days from the day of their first order (that day included), and
month k after the first order is the days 30(k-1)+1 .. 30k after that day. A cohort measure counts
only customers the data follows long enough and, where the users' sign-up times are known, only
new customers: those who signed up at or after the data's start (a shopper of long standing who
first orders in the data is not a new customer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cadence.world import _params as P

YEAR_DAYS = 365
MONTH_DAYS = 30
MONTHS = (1, 2, 3, 6, 12)
HORIZON_DAYS = 30
HEAVY_ORDERS = 12
DAY_S = 86_400


def realism_table(
    orders: pd.DataFrame,
    *,
    end: pd.Timestamp,
    start: pd.Timestamp | None = None,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    shipments: pd.DataFrame | None = None,
    oracle: pd.DataFrame | None = None,
    cycle_categories: Sequence[str] = P.CYCLE_CATS,
) -> list[dict]:
    """The realism table: one row per measure, always in the same order.

    `orders` needs order_id, user_id, ordered_at; `users` user_id, signup_at (with `start`, the
    data's first instant); `items` order_id, sku, quantity; `products` sku, category; `shipments`
    late; `oracle` user_id, snapshot_at, p_30d. `end` is the data's (exclusive) end. A row is a
    dict: measure, value (text), target, met (None when the row is a reference only or cannot be
    measured), reference (real logs' figures), figures (the numbers behind value) and n (how many
    customers, pairs, orders, parcels or rows it rests on).
    """
    log = _Log(orders, end)
    new = np.ones(log.users.size, dtype=bool)
    if users is not None and start is not None:
        signup = users.set_index("user_id")["signup_at"].reindex(log.users)
        new = (pd.to_datetime(signup, utc=True) >= pd.Timestamp(start)).to_numpy(bool)
    zero, auc = _oracle_rows(log, oracle)
    return [
        *_cohort_rows(log, new),
        _gap_row(log),
        _cv_row(log, items, products, cycle_categories),
        _basket_row(items),
        zero,
        _late_row(shipments),
        auc,
    ]


class _Log:
    """The order log as arrays sorted by (customer, time), with each customer's first day."""

    def __init__(self, orders: pd.DataFrame, end: pd.Timestamp) -> None:
        orders = orders[orders["user_id"].notna()]
        codes, self.users = pd.factorize(orders["user_id"])
        sec = _seconds(orders["ordered_at"])
        order = np.lexsort((sec, codes))
        self.order_id = orders["order_id"].to_numpy()[order]
        self.user = codes[order].astype(np.int64)
        self.sec = sec[order]
        self.day = self.sec // DAY_S
        self.end_s = int(pd.Timestamp(end).timestamp())
        self.end_day = self.end_s // DAY_S  # days before this one lie wholly inside the data
        self.first_day = self.day[np.flatnonzero(np.diff(self.user, prepend=-1))]
        self.age = self.day - self.first_day[self.user]
        same = np.r_[False, self.user[1:] == self.user[:-1]]
        # One purchase day per customer and day: a second order that day is no new visit.
        self.new_day = ~(same & np.r_[False, self.day[1:] == self.day[:-1]])
        self.ref = int(self.sec.min()) if self.sec.size else 0

    def keys(self, user: np.ndarray, sec: np.ndarray) -> np.ndarray:
        """(customer, second) packed into one integer that sorts as the pair does."""
        return user.astype(np.int64) * (1 << 32) + (sec - self.ref + (1 << 31))


def _cohort_rows(log: _Log, new: np.ndarray) -> list[dict]:
    # New customers whose whole first 12 months are in the data.
    year = new & (log.first_day <= log.end_day - YEAR_DAYS)
    in_year = log.age < YEAR_DAYS
    counts = np.bincount(log.user[in_year], minlength=log.users.size)[year].astype(float)
    n = int(counts.size)
    one = float(np.mean(counts == 1)) if n else np.nan
    heavy = float(np.mean(counts > HEAVY_ORDERS)) if n else np.nan
    stats = [float(f(counts)) if n else np.nan for f in (np.mean, np.median, _p90)]

    active = []
    for k in MONTHS:
        followed = new & (log.first_day + MONTH_DAYS * k < log.end_day)
        lo, hi = MONTH_DAYS * (k - 1) + 1, MONTH_DAYS * k
        hit = np.zeros(log.users.size, dtype=bool)
        hit[log.user[(log.age >= lo) & (log.age <= hi)]] = True
        active.append((float(hit[followed].mean()) if followed.any() else np.nan, followed.sum()))
    shares = [a for a, _ in active]
    measured = bool(np.all(np.isfinite(shares)))
    return [
        _row(
            "new customers with exactly one order in 12 months",
            [one],
            _pct(one),
            "30-50%",
            _within(one, 0.30, 0.50),
            "CDNOW 54%; Online Retail II 27.6%",
            n,
        ),
        _row(
            "active in month 1 after the first order",
            [shares[0]],
            _pct(shares[0]),
            "15-35%",
            _within(shares[0], 0.15, 0.35),
            "CDNOW 17.5%",
            int(active[0][1]),
        ),
        _row(
            "active in months 1, 2, 3, 6, 12",
            shares,
            ", ".join(_pct(s, sign=False) for s in shares) + "%",
            "falling steadily",
            bool(np.all(np.diff(shares) <= 0)) if measured else None,
            "CDNOW 17.5, 13, 10, 8.5, 6.8%",
            int(active[-1][1]),
        ),
        _row(
            "orders in 12 months: mean / median / p90",
            stats,
            " / ".join(_num(s) for s in stats),
            "median 2-4",
            _within(stats[1], 2, 4),
            "CDNOW 2.5 / 1 / 5",
            n,
        ),
        _row(
            f"customers with over {HEAVY_ORDERS} orders in 12 months",
            [heavy],
            _pct(heavy),
            "above 0 (a heavy replenishing segment)",
            None if np.isnan(heavy) else heavy > 0,
            "",
            n,
        ),
    ]


def _gap_row(log: _Log) -> dict:
    """Gaps between a customer's purchase days in their first 12 months, pooled."""
    days = log.day[log.new_day & (log.age < YEAR_DAYS)]
    user = log.user[log.new_day & (log.age < YEAR_DAYS)]
    gaps = np.diff(days)[user[1:] == user[:-1]].astype(float)
    q = np.quantile(gaps, [0.5, 0.25, 0.75]) if gaps.size else np.full(3, np.nan)
    return _row(
        "days between orders: median (IQR)",
        list(map(float, q)),
        f"{_num(q[0])} ({_num(q[1])}-{_num(q[2])})",
        "reference only",
        None,
        "CDNOW 31 (12-83); Instacart 7 (4-15)",
        int(gaps.size),
    )


def _cv_row(
    log: _Log,
    items: pd.DataFrame | None,
    products: pd.DataFrame | None,
    cycle_categories: Sequence[str],
) -> dict:
    """Per (shopper, replenished category) with 2+ gaps between its purchase days: the gaps'
    sample standard deviation over their mean; the median over those pairs."""
    cv = np.array([])
    if items is not None and products is not None and log.users.size:
        cycle = products.loc[products["category"].isin(cycle_categories), ["sku", "category"]]
        cat = pd.Index(cycle["sku"]).get_indexer(items["sku"])
        # Each line of a replenished category to its order's customer and day.
        at = pd.Index(log.order_id).get_indexer(items["order_id"])
        mine = (cat >= 0) & (at >= 0)
        at, cat = at[mine], cat[mine]
        frame = pd.DataFrame(
            {"u": log.user[at], "c": pd.factorize(cycle["category"])[0][cat], "d": log.day[at]}
        ).drop_duplicates()
        frame = frame.sort_values(["u", "c", "d"], kind="stable")
        gap = frame["d"].diff()
        first = (frame["u"].diff() != 0) | (frame["c"].diff() != 0)
        gaps = frame.assign(g=gap.where(~first)).dropna(subset=["g"])
        stats = gaps.groupby(["u", "c"])["g"].agg(["mean", "std", "size"])
        stats = stats[stats["size"] >= 2]
        cv = (stats["std"] / stats["mean"]).to_numpy(float)
    med = float(np.median(cv)) if cv.size else np.nan
    return _row(
        "gap CV per shopper, replenished categories: median",
        [med],
        _num(med, 2),
        "0.3-0.5",
        _within(med, 0.3, 0.5),
        "CDNOW per customer 0.92; diaper subscriptions: user quartiles 28/36/50 days",
        int(cv.size),
    )


def _basket_row(items: pd.DataFrame | None) -> dict:
    n, mean = 0, np.nan
    if items is not None and items.shape[0]:
        n = int(items["order_id"].nunique())
        mean = float(items["quantity"].sum()) / n
    return _row(
        "units per order: mean",
        [mean],
        _num(mean, 2),
        "at least 3",
        None if np.isnan(mean) else mean >= 3,
        "CDNOW 2.5; Instacart 10.1",
        n,
    )


def _late_row(shipments: pd.DataFrame | None) -> dict:
    late = None if shipments is None else shipments["late"].dropna().to_numpy(bool)
    share = float(late.mean()) if late is not None and late.size else np.nan
    return _row(
        "late parcels",
        [share],
        _pct(share),
        "5-10%",
        _within(share, 0.05, 0.10),
        "",
        0 if late is None else int(late.size),
    )


def _oracle_rows(log: _Log, oracle: pd.DataFrame | None) -> tuple[dict, dict]:
    column = f"p_{HORIZON_DAYS}d"
    zero, auc, n_active, n_scored = np.nan, np.nan, 0, 0
    if oracle is not None and column in oracle.columns and oracle.shape[0] and log.sec.size:
        snap = _seconds(oracle["snapshot_at"])
        user = pd.Index(log.users).get_indexer(oracle["user_id"]).astype(np.int64)
        p = oracle[column].to_numpy(float)
        keys = log.keys(log.user, log.sec)
        at = np.searchsorted(keys, log.keys(user, snap), side="left")
        # The customer's last order before the snapshot, and their first one at or after it.
        before = np.clip(at - 1, 0, max(keys.size - 1, 0))
        after = np.clip(at, 0, max(keys.size - 1, 0))
        known = (user >= 0) & (keys.size > 0)
        active = (
            known
            & (at > 0)
            & (log.user[before] == user)
            & (log.sec[before] >= snap - YEAR_DAYS * DAY_S)
        )
        bought = (
            known
            & (at < keys.size)
            & (log.user[after] == user)
            & (log.sec[after] < snap + HORIZON_DAYS * DAY_S)
        )
        n_active = int(active.sum())
        zero = float(np.mean(p[active] == 0)) if n_active else np.nan
        # Only snapshots whose whole window lies inside the data have a known outcome.
        scored = active & (snap + HORIZON_DAYS * DAY_S <= log.end_s)
        n_scored = int(scored.sum())
        auc = _auc(p[scored], bought[scored])
    return (
        _row(
            "true 30-day probability 0, active shoppers",
            [zero],
            _pct(zero),
            "at most 5%",
            None if np.isnan(zero) else zero <= 0.05,
            "",
            n_active,
        ),
        _row(
            "oracle 30-day AUC, active shoppers",
            [auc],
            _num(auc, 3),
            "0.80-0.90",
            _within(auc, 0.80, 0.90),
            "published repurchase AUCs 0.70-0.81",
            n_scored,
        ),
    )


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC (ties count half); NaN without both outcomes."""
    from sklearn.metrics import roc_auc_score

    if label.all() or not label.any():
        return np.nan
    return float(roc_auc_score(label, score))


def _seconds(ts: pd.Series) -> np.ndarray:
    naive = pd.to_datetime(ts, utc=True).dt.tz_localize(None)
    return naive.to_numpy(dtype="datetime64[s]").astype(np.int64)


def _p90(x: np.ndarray) -> float:
    return float(np.quantile(x, 0.9))


def _within(x: float, lo: float, hi: float) -> bool | None:
    return None if np.isnan(x) else bool(lo <= x <= hi)


def _pct(x: float, *, sign: bool = True) -> str:
    if np.isnan(x):
        return "n/a"
    return f"{100 * x:.1f}" + ("%" if sign else "")


def _num(x: float, digits: int = 1) -> str:
    if np.isnan(x):
        return "n/a"
    return f"{x:.0f}" if digits == 1 and float(x).is_integer() else f"{x:.{digits}f}"


def _row(
    measure: str,
    figures: list[float],
    value: str,
    target: str,
    met: bool | None,
    reference: str,
    n: int,
) -> dict:
    unmeasured = all(np.isnan(f) for f in figures)
    return {
        "measure": measure,
        "value": "n/a" if unmeasured else value,
        "target": target,
        "met": met,
        "reference": reference,
        "figures": [float(f) for f in figures],
        "n": n,
    }
