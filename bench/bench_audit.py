"""Benchmark: the fairness audit against the audits issue's speed target (under 60 s on the
default world's champion, 1,000 resamples, 2 cores).

Measures, in one run, on the workspace of `make demo`:
1. the whole audit (`cadence audit` without the command's start-up): every grouping's
   MetricFrame and 1,000 shopper resamples, proxy risk, the ThresholdOptimizer variant and its
   own checks, the report files and the MLflow record; with each stage's time;
2. the bootstrap alone, on one grouping (gender), beside Fairlearn's own bootstrap
   (`MetricFrame(n_boot=...)`, row resamples, its scalar metrics: selection rate, true and
   false positive rates) on the same rows, timed at fewer resamples and given per resample,
   since a thousand take minutes.

    python bench/bench_audit.py                  # uses the workspace (.cadence) of `make demo`
    python bench/bench_audit.py --home DIR       # another workspace with a trained model
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", type=Path, default=Path(os.environ.get("CADENCE_HOME", ".cadence"))
    )
    parser.add_argument("--fairlearn-resamples", type=int, default=20)
    args = parser.parse_args()

    from cadence.cli._logs import silence_warnings
    from cadence.flows.settings import Settings
    from cadence.flows.steps import audits as step
    from cadence.flows.steps._progress import Progress

    silence_warnings()
    settings = Settings(home=args.home)
    conf = settings.decisions()
    print(f"cores: {os.cpu_count()}; workspace: {args.home}")

    marks: list[tuple[str, float]] = []

    def report(event: Progress) -> None:
        marks.append((event.message, time.perf_counter()))

    started = time.perf_counter()
    folder, doc = step.run_audit(settings, conf, report=report)
    total = time.perf_counter() - started
    print(f"1. audit of {doc['model']['uri']}: {doc['verdict']} in {total:.1f} s (target < 60 s)")
    print(f"   {doc['targeting']['rows']:,} test rows, {doc['targeting']['customers']:,} shoppers,")
    print(f"   {len(doc['targeting']['sections'])} groupings, {conf.audits.resamples:,} resamples")
    # Each stage runs from its own progress message to the next one.
    stages = [("finding the model and checking its inputs", started), *marks]
    for (message, at), (_, end) in zip(stages, stages[1:], strict=False):
        print(f"   {end - at:6.1f} s  {message}")
    print(f"   report: {folder / 'audit.html'}")

    _bootstraps(settings, conf, args.fairlearn_resamples)


def _bootstraps(settings, conf, fairlearn_resamples: int) -> None:
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    from cadence.audits import groupings
    from cadence.audits._fairness import Limits, Resample, audit_grouping
    from cadence.flows.steps import audits as step
    from cadence.flows.steps.models import _rows_for, context
    from cadence.models._registry import load

    ctx = context(settings, conf)
    uri, _ = step.resolve(ctx, None)
    trained = load(uri)
    rows, _ = _rows_for(settings, trained, calibrate=False)
    rows = rows[rows.slice == "test"].reset_index(drop=True)
    rows = rows[rows.days_since_last_order <= conf.models.scoring.active_days]
    y = rows[f"y_{trained.horizon_days}d"].to_numpy(int)
    p = trained.predict(rows).probability.to_numpy()
    offered = p >= step.operating_threshold(conf)
    users = step.users_table(settings.raw_dir, ["gender"])
    labels = groupings(
        users, rows.user_id.astype(str), sensitive=["gender"], proxies=[], intersections=[]
    ).labels["gender"]
    b = conf.audits.resamples
    t = time.perf_counter()
    resample = Resample.of(rows.user_id.to_numpy(), b, 0)
    audit_grouping(
        y,
        p,
        offered=offered,
        sensitive_features=labels,
        resample=resample,
        min_shoppers=conf.audits.min_group_shoppers,
        limits=Limits(),
    )
    ours = time.perf_counter() - t
    t = time.perf_counter()
    MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=y,
        y_pred=offered,
        sensitive_features=labels,
        n_boot=fairlearn_resamples,
        ci_quantiles=[0.025, 0.975],
        random_state=0,
    )
    theirs = time.perf_counter() - t
    print(f"2. bootstrap of one grouping (gender, {len(y):,} rows, {labels.nunique()} groups):")
    print(f"   Cadence, {b:,} shopper resamples: {ours:.2f} s ({1000 * ours / b:.2f} ms each)")
    print(
        f"   Fairlearn MetricFrame(n_boot={fairlearn_resamples}), row resamples: {theirs:.2f} s "
        f"({1000 * theirs / fairlearn_resamples:.0f} ms each; {b:,} would take about "
        f"{theirs / fairlearn_resamples * b:.0f} s)"
    )


if __name__ == "__main__":
    main()
