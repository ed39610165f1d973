"""Models: repurchase propensity and timing, their baselines, evaluation, registry and lists.

Labels per (user, snapshot) with censoring, the time-only split, the calibrated XGBoost
propensity, the XGBoost AFT timing model, the rule and BG/NBD baselines, the evaluation against
them and the world's oracle, MLflow tracking with the `repurchase` registry (challenger,
champion, gates, rollback) and the scored list. Routing (`_route_*`): the parcel cost,
delivery-time and damage models registered as `routing`, the candidates and strategies
(nearest, greedy, the optimiser, the clairvoyant bound), the held-out replay and the regional
forecast with its transfers.
"""
