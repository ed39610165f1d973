"""Models: repurchase propensity and timing, their baselines and evaluation (in progress).

Built so far: labels per (user, snapshot) with censoring, the time-only split, the calibrated
XGBoost propensity, the XGBoost AFT timing model, the rule and BG/NBD baselines, and the
evaluation against them and the world's oracle. Not built yet: MLflow tracking and the
registry, promotion gates, scored lists and the `cadence train/evaluate/promote/score`
commands; the routing models.
"""
