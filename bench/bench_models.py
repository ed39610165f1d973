"""Benchmark: the repurchase model against the models issue's speed targets.

Measures, on one machine, in one run:
1. the default world's whole train-evaluate-register (what `cadence train repurchase` does),
   into a throw-away MLflow database so the workspace's registry is left alone;
2. training both estimators on 1,000,000 rows x every feature (tree_method=hist);
3. scoring 1,000,000 users: probability, timing, interval and the three drivers from
   XGBoost's approximate `pred_contribs`, then writing the list as Parquet and CSV; and the
   same with exact TreeSHAP drivers on a tenth of them.

The default world has fewer than a million labelled rows, so (2) and (3) draw a million rows
with replacement from its real feature rows: the values and their spread are real, the rows
repeat. The figures say so.

    python bench/bench_models.py                  # uses the workspace (.cadence) of `make demo`
    python bench/bench_models.py --home DIR       # another workspace with raw/ and features/
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", type=Path, default=Path(os.environ.get("CADENCE_HOME", ".cadence"))
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from cadence.cli._logs import silence_warnings
    from cadence.flows.settings import Settings
    from cadence.flows.steps import _read as _data
    from cadence.flows.steps import models as step
    from cadence.models._score import score_frame, write_list
    from cadence.models._train import prepare

    silence_warnings()
    if not (args.home / "features" / "manifest.json").exists():
        raise SystemExit(f"no features in {args.home}: run `make demo` first")
    print(f"machine: {os.cpu_count()} cores")

    # 1. The default world's train-evaluate-register, end to end.
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=args.home, mlflow_tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        t0 = time.perf_counter()
        out = step.train(step.context(settings, settings.decisions(), training=True))
        total = time.perf_counter() - t0
        m = out["report"]["model"]
        print(
            f"train-evaluate-register on {args.home}: {total:.1f} s "
            f"(target < 120 s); test ROC AUC {m['roc_auc']:.3f}, {out['n_test']:,} test rows"
        )

    # 2. Training on a million rows.
    conf = Settings().decisions().models
    frame = _data.feature_rows(args.home / "features")
    log = _data.orders(args.home / "raw")
    end = _data.data_end(args.home / "raw", log)
    split = conf.split
    rows, tsplit = prepare(
        frame,
        log,
        end=end,
        horizon_days=conf.horizon_days,
        test=split.test_snapshots,
        calibrate=split.calibrate_snapshots,
    )
    features = [c for c in frame.columns if c not in ("user_id", "snapshot_at")]
    rng = np.random.default_rng(0)
    train = rows[rows.slice == "train"]
    big = train.iloc[rng.integers(0, len(train), args.rows)].reset_index(drop=True)
    big["slice"] = "train"
    cal = rows[rows.slice == "calibrate"]
    both = __import__("pandas").concat([big, cal], ignore_index=True)
    t0 = time.perf_counter()
    trained = step.fit_configured(both, features, tsplit, conf.training)
    took = time.perf_counter() - t0
    print(
        f"training on {len(big):,} rows x {len(features)} features "
        f"(drawn with replacement from {len(train):,} real rows; propensity "
        f"{trained.propensity.n_estimators} trees + timing {trained.timing.n_estimators} trees, "
        f"hist): {took:.1f} s (target < 300 s)"
    )

    # 3. Scoring a million users, with the drivers, and writing the list.
    users = frame.iloc[rng.integers(0, len(frame), args.rows)].reset_index(drop=True)
    users["user_id"] = [f"b{i:07d}" for i in range(len(users))]
    snap = frame.snapshot_at.max()
    sc = conf.scoring

    def score(part, exact: bool):
        return score_frame(
            trained,
            part,
            snapshot=snap,
            lead_days=sc.lead_days,
            medium=sc.bands.medium,
            high=sc.bands.high,
            model_version="bench",
            exact_drivers=exact,
        )

    t0 = time.perf_counter()
    scored = score(users, exact=False)
    t_score = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        write_list(scored, Path(tmp))
        t_write = time.perf_counter() - t1
    print(
        f"scoring {len(scored):,} users (probability, timing, interval, 3 drivers by "
        f"approximate contributions): {t_score:.1f} s, writing Parquet + CSV {t_write:.1f} s, "
        f"total {t_score + t_write:.1f} s (target < 60 s)"
    )
    part = users.iloc[: args.rows // 10]
    t0 = time.perf_counter()
    score(part, exact=True)
    t_exact = time.perf_counter() - t0
    print(
        f"scoring {len(part):,} users with exact TreeSHAP drivers: {t_exact:.1f} s, so about "
        f"{t_exact * len(users) / len(part):.0f} s for {len(users):,} (not run in full)"
    )


if __name__ == "__main__":
    main()
