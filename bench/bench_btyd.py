"""Benchmark: fitting BG/NBD to 1,000,000 shoppers (target: under 60 s on 2 cores).

Draws histories from BG/NBD with known parameters (vectorised NumPy), then times
`cadence.features._btyd.fit_bgnbd` on all of them, twice: with recency and T in whole days (as
order logs give them, so identical histories collapse into weights) and in continuous time
(every history distinct, no collapsing). For comparison, `lifetimes.BetaGeoFitter` fits a
50,000-shopper subsample of the daily data, beside ours on the same subsample; this benchmark
does not run it on the million. Prints what was compared and the figures. (Whole days shift
alpha a little from the drawn value: recency is floored to the day.)

    python bench/bench_btyd.py [--customers 1000000] [--lifetimes-sample 50000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lifetimes-sample", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from cadence.features._btyd import BGNBDParams, fit_bgnbd, simulate_bgnbd

    rng = np.random.default_rng(args.seed)
    true = BGNBDParams(r=0.25, alpha=4.0, a=0.8, b=2.5)
    n = args.customers
    start = time.perf_counter()
    t_cont = rng.uniform(1, 730, n)
    x, tx_cont = simulate_bgnbd(true, t_cont, rng)
    # Whole days: the first order on a day, the snapshot at a day's end.
    t_day, tx_day = np.ceil(t_cont), np.floor(tx_cont)
    print(f"simulated {n:,} shoppers from {_fmt(true)} in {time.perf_counter() - start:.2f} s")
    print(f"  repeat buyers: {(x > 0).mean():.1%}, mean frequency {x.mean():.2f}")

    for label, tx, t in (("whole days", tx_day, t_day), ("continuous", tx_cont, t_cont)):
        start = time.perf_counter()
        fit = fit_bgnbd(x, tx, t)
        took = time.perf_counter() - start
        print(
            f"ours, {n:,} shoppers ({label}, {fit.n_patterns:,} distinct histories): "
            f"{took:.2f} s, {fit.iterations} iterations -> {_fmt(fit.params)}"
        )

    from lifetimes import BetaGeoFitter
    from lifetimes.fitters import ConvergenceError

    m = min(args.lifetimes_sample, n)
    idx = rng.choice(n, m, replace=False)
    start = time.perf_counter()
    fit = fit_bgnbd(x[idx], tx_day[idx], t_day[idx])
    ours = time.perf_counter() - start
    print(f"ours, {m:,}-shopper subsample (whole days): {ours:.2f} s -> {_fmt(fit.params)}")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            lf = BetaGeoFitter().fit(x[idx], tx_day[idx], t_day[idx])
        p = lf.params_
        got = _fmt(BGNBDParams(p["r"], p["alpha"], p["a"], p["b"]))
    except ConvergenceError:
        got = "no convergence"
    took = time.perf_counter() - start
    print(f"lifetimes, the same subsample: {took:.2f} s -> {got}")


def _fmt(p) -> str:
    return f"r={p.r:.4f} alpha={p.alpha:.4f} a={p.a:.4f} b={p.b:.4f}"


if __name__ == "__main__":
    main()
