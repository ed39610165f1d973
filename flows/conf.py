"""What the pipeline decides with: each YAML file in `conf/` read into a typed, validated model.

A file with an unknown key, a wrong type or a bad value stops with the file, the key and the
reason (`ConfError`). The defaults ship inside the package (`cadence.conf`); `CADENCE_CONF`
points at another folder holding the same files.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cadence.serving._config import ServingConf

Positive = Annotated[int, Field(gt=0)]
Share = Annotated[float, Field(gt=0, lt=1)]


class ConfError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- world.yaml -----------------------------------------------------------------------------


class TruthConf(_Strict):
    every_days: Positive = 7
    horizons_days: tuple[Positive, ...] = (7, 30)


class OffersConf(_Strict):
    """The shoppers' true response to an offer (`world.ResponseParams`), on the logit scale."""

    base: float = -2.7
    need: Annotated[float, Field(ge=0)] = 2.0
    need_days: Annotated[float, Field(gt=0)] = 7.0
    sensitivity: Annotated[float, Field(ge=0)] = 1.0
    per_discount: Annotated[float, Field(ge=0)] = 8.0
    express: Annotated[float, Field(ge=0)] = 0.5
    fatigue: Annotated[float, Field(ge=0)] = 0.7
    lapsed: Annotated[float, Field(le=0)] = -1.5
    cancel: Annotated[float, Field(ge=0, le=1)] = 0.08
    addon_lift: Annotated[float, Field(ge=0)] = 0.5
    pull_days: Annotated[int, Field(ge=0)] = 7


class WorldConf(_Strict):
    users: Positive = 20_000
    days: Positive = 546
    seed: Annotated[int, Field(ge=0)] = 7
    start: dt.date = dt.date(2025, 1, 1)
    truth: TruthConf = TruthConf()
    offers: OffersConf = OffersConf()


# --- features.yaml --------------------------------------------------------------------------


class SnapshotsConf(_Strict):
    every_days: Positive = 7
    first_after_days: Annotated[int, Field(ge=0)] = 28


class FeaturesConf(_Strict):
    snapshots: SnapshotsConf = SnapshotsConf()
    longest_horizon_days: Positive = 30
    # Snapshots are computed in batches of about this many (user, snapshot) rows.
    rows_per_batch: Positive = 1_000_000


# --- models.yaml ----------------------------------------------------------------------------


class SplitConf(_Strict):
    test_snapshots: Positive = 4
    calibrate_snapshots: Positive = 4


class _TreesConf(_Strict):
    n_estimators: Positive
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    max_depth: Positive = 5
    subsample: Annotated[float, Field(gt=0, le=1)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0, le=1)] = 0.4


class PropensityConf(_TreesConf):
    n_estimators: Positive = 200
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    # Feature -> +1 (P(order) never falls as it rises) or -1 (never rises); names the build
    # lacks are ignored.
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    # Stop when the calibration slice's log loss has not improved for this many rounds
    # (`n_estimators` is then the ceiling); None fits all `n_estimators`.
    early_stopping_rounds: Positive | None = 30
    min_child_weight: Annotated[float, Field(ge=0)] = 5.0
    reg_lambda: Annotated[float, Field(ge=0)] = 1.0
    # Both grow by sqrt(reference_buyers / buyer rows in the training slice) where that
    # exceeds 1; None keeps them as set.
    reference_buyers: Positive | None = None


class TimingConf(_TreesConf):
    n_estimators: Positive = 100
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.08
    sigma: Annotated[float, Field(gt=0)] = 0.3
    lapsed_after_days: Annotated[float, Field(gt=0)] | None = 90


class TrainingConf(_Strict):
    seed: Annotated[int, Field(ge=0)] = 0
    # XGBoost threads per model.
    n_jobs: Positive = 2
    # Fewer distinct buyers than this and there is nothing to learn from.
    min_buyers: Positive = 500
    propensity: PropensityConf = PropensityConf()
    timing: TimingConf = TimingConf()
    # Register BG/NBD itself when the XGBoost hybrid does not beat it on the calibration slice.
    select_against_btyd: bool = True


class PromotionConf(_Strict):
    gates: list[str] = Field(
        default_factory=lambda: ["beats_champion", "calibrated", "fairness_audit"], min_length=1
    )
    margin_roc_auc: float = 0.002
    max_ece: Annotated[float, Field(gt=0, le=1)] = 0.02


class BandsConf(_Strict):
    medium: Share = 0.3
    high: Share = 0.6

    @model_validator(mode="after")
    def _ordered(self) -> BandsConf:
        if not self.medium < self.high:
            raise ValueError(f"needs medium < high, got medium {self.medium}, high {self.high}")
        return self


class ScoringConf(_Strict):
    lead_days: Annotated[int, Field(ge=0)] = 3
    drivers: Literal["treeshap", "approximate"] = "treeshap"
    bands: BandsConf = BandsConf()
    # The bands whose shoppers get a suggested contact date; the others' stays empty.
    contact_bands: list[Literal["high", "medium", "low"]] = Field(
        default_factory=lambda: ["high", "medium"]
    )
    # A shopper is active, and scored, with an order in this many days before the snapshot.
    active_days: Positive = 365


class ModelsConf(_Strict):
    horizon_days: Positive = 30
    # Every horizon a model may be trained, promoted and scored for (each its own model).
    horizons_days: list[Positive] = Field(default_factory=lambda: [7, 30], min_length=1)
    split: SplitConf = SplitConf()
    training: TrainingConf = TrainingConf()
    promotion: PromotionConf = PromotionConf()
    scoring: ScoringConf = ScoringConf()

    @model_validator(mode="after")
    def _default_is_allowed(self) -> ModelsConf:
        if self.horizon_days not in self.horizons_days:
            raise ValueError(
                f"horizon_days {self.horizon_days} is not among horizons_days {self.horizons_days}"
            )
        return self


# --- flows.yaml -----------------------------------------------------------------------------


class SchedulesConf(_Strict):
    """Cron expressions (UTC) for the deployments `cadence deploy` registers."""

    score: str = "0 5 * * *"
    train: str = "0 3 * * 1"
    promote: str = "0 4 * * 1"
    route: str = "0 5 * * 2"
    timezone: str = "UTC"


class DriftConf(_Strict):
    # The rows the latest snapshot is compared with: the champion's `test` window (the
    # population it was last validated on, a horizon before the newest labels) or its whole
    # `train` window. Shops grow and age, so tenure-like inputs drift away from an old window
    # by themselves; the test window is the closest population the champion was judged on.
    reference: Literal["train", "test"] = "test"
    # Population stability index: above this for any model input, or for the score, retrain.
    max_feature_psi: Annotated[float, Field(gt=0)] = 0.25
    max_score_psi: Annotated[float, Field(gt=0)] = 0.2
    # Retrain when the champion's realised ROC AUC falls this far below its test AUC.
    max_auc_drop: Annotated[float, Field(gt=0, lt=1)] = 0.05
    bins: Annotated[int, Field(ge=2)] = 10


class FlowsConf(_Strict):
    # Threads building snapshots in parallel; `dask` runs them on a Dask cluster instead.
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    workers: Positive = 2
    # Retries of a task that talks to an outside service (MLflow server, Redis, PostgreSQL).
    retries: Annotated[int, Field(ge=0)] = 2
    retry_delay_seconds: Annotated[float, Field(ge=0)] = 5
    schedules: SchedulesConf = SchedulesConf()
    drift: DriftConf = DriftConf()


# --- audits.yaml ----------------------------------------------------------------------------


Fraction = Annotated[float, Field(ge=0, le=1)]


class LimitsConf(_Strict):
    # At least: the lowest group's selection rate over the highest's (the four-fifths rule).
    demographic_parity_ratio: Fraction = 0.8
    # At most: the larger of the spreads of true and of false positive rates.
    equalized_odds_difference: Fraction = 0.10
    # At most: the spread of observed-minus-predicted buying rates.
    calibration_gap: Fraction = 0.05


class MitigationConf(_Strict):
    # The constraint Fairlearn's ThresholdOptimizer meets in the variant shown beside the model.
    constraints: Literal["demographic_parity", "equalized_odds"] = "demographic_parity"
    # What the thresholds maximise within the constraint (Fairlearn's objectives).
    objective: Literal["balanced_accuracy_score", "accuracy_score"] = "balanced_accuracy_score"
    # On FAIL: `block` keeps the champion; `mitigate` registers the post-processed variant as
    # a new challenger, audits it, and promotes it only if it passes.
    policy: Literal["block", "mitigate"] = "block"


class AuditsConf(_Strict):
    sensitive: list[str] = Field(default_factory=lambda: ["gender", "age_band"], min_length=1)
    proxies: list[str] = Field(default_factory=lambda: ["city_tier", "region"])
    intersections: list[list[str]] = Field(default_factory=lambda: [["gender", "age_band"]])
    gated: list[Literal["sensitive", "proxy", "intersection"]] = Field(
        default_factory=lambda: ["sensitive", "intersection"], min_length=1
    )
    min_group_shoppers: Positive = 200
    resamples: Positive = 1000
    level: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    seed: Annotated[int, Field(ge=0)] = 0
    thresholds: LimitsConf = LimitsConf()
    mitigation: MitigationConf = MitigationConf()
    proxy_folds: Annotated[int, Field(ge=2)] = 3
    proxy_top_features: Positive = 10
    proxy_max_rows: Positive = 20_000

    @model_validator(mode="after")
    def _intersections_named(self) -> AuditsConf:
        named = {*self.sensitive, *self.proxies}
        for parts in self.intersections:
            if len(parts) < 2 or not set(parts) <= named:
                raise ValueError(
                    f"intersections: {parts} must join two or more of sensitive + proxies "
                    f"({sorted(named)})"
                )
        return self


# --- routing.yaml ---------------------------------------------------------------------------


class RoutingModelsConf(_Strict):
    min_parcels: Positive = 1000
    n_estimators: Positive = 400
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.2
    max_depth: Positive = 8
    early_stopping_rounds: Positive = 30
    valid_share: Share = 0.15
    quantiles: list[Share] = Field(default_factory=lambda: [0.1, 0.5, 0.9], min_length=1)
    seed: Annotated[int, Field(ge=0)] = 0
    n_jobs: Positive = 2
    damage_max_depth: Positive = 3
    damage_learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05


class RoutingObjectiveConf(_Strict):
    per_day: Annotated[float, Field(ge=0)] = 1.0
    late_penalty: Annotated[float, Field(ge=0)] = 15.0
    split_penalty: Annotated[float, Field(ge=0)] = 4.0
    damage_weight: Annotated[float, Field(ge=0)] = 1.0
    store_penalty: Annotated[float, Field(ge=0)] = 0.0
    use_stores: bool = True


class RoutingCandidatesConf(_Strict):
    nodes_per_order: Positive = 6
    waves: Annotated[int, Field(ge=1, le=6)] = 3
    min_carrier_parcels: Annotated[int, Field(ge=1)] = 50


class RoutingOptimiserConf(_Strict):
    time_limit_seconds: Annotated[float, Field(gt=0)] = 20.0
    mip_rel_gap: Annotated[float, Field(ge=0, lt=1)] = 1e-4
    unserved_cost: Annotated[float, Field(gt=0)] = 1000.0
    max_mip_candidates: Positive = 50_000


class RoutingPromotionConf(_Strict):
    gates: list[str] = Field(
        default_factory=lambda: ["routing_cheaper", "routing_feasible", "routing_fairness"]
    )
    # A negative margin asks the challenger to be that much cheaper than the champion.
    margin: Annotated[float, Field(gt=-1, lt=1)] = 0.005
    max_next_day_drop: Annotated[float, Field(ge=0, le=1)] = 0.05


class RoutingPrepositioningConf(_Strict):
    horizon_days: Annotated[int, Field(ge=1, le=14)] = 3
    window_days: Positive = 28
    season_days: Positive = 84
    cover: Annotated[float, Field(gt=0)] = 1.0
    cost_per_kg: Annotated[float, Field(ge=0)] = 0.6
    cost_per_unit: Annotated[float, Field(ge=0)] = 0.2
    saving_per_unit: Annotated[float, Field(ge=0)] = 3.0


class RoutingConf(_Strict):
    holdout_days: Positive = 28
    wave_lead_hours: Annotated[float, Field(ge=0, le=24)] = 1.0
    models: RoutingModelsConf = RoutingModelsConf()
    objective: RoutingObjectiveConf = RoutingObjectiveConf()
    candidates: RoutingCandidatesConf = RoutingCandidatesConf()
    optimiser: RoutingOptimiserConf = RoutingOptimiserConf()
    promotion: RoutingPromotionConf = RoutingPromotionConf()
    prepositioning: RoutingPrepositioningConf = RoutingPrepositioningConf()

    @model_validator(mode="after")
    def _quantiles_rise(self) -> RoutingConf:
        q = self.models.quantiles
        if sorted(set(q)) != list(q):
            raise ValueError(f"models.quantiles must rise strictly, got {q}")
        return self


_FILES: dict[str, type[BaseModel]] = {
    "world": WorldConf,
    "features": FeaturesConf,
    "models": ModelsConf,
    "flows": FlowsConf,
    "audits": AuditsConf,
    "routing": RoutingConf,
    # The merge service's decisions are declared beside it (`serving._config`).
    "serving": ServingConf,
}


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def read_file(path: Path, model: type[BaseModel]) -> BaseModel:
    """One YAML file as its typed model; `ConfError` names the file, key and reason."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError(f"{path}: cannot read it ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{_where(e['loc'])}: {reason}")
        raise ConfError(f"{path}: " + "; ".join(problems)) from exc


class Conf:
    """The files of a conf folder, each read (and validated) the first time it is used."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfError(f"configuration folder {folder} does not exist (CADENCE_CONF)")
        self.folder = folder

    def _read(self, name: str):
        return read_file(self.folder / f"{name}.yaml", _FILES[name])

    @cached_property
    def world(self) -> WorldConf:
        return self._read("world")

    @cached_property
    def features(self) -> FeaturesConf:
        return self._read("features")

    @cached_property
    def models(self) -> ModelsConf:
        return self._read("models")

    @cached_property
    def flows(self) -> FlowsConf:
        return self._read("flows")

    @cached_property
    def audits(self) -> AuditsConf:
        return self._read("audits")

    @cached_property
    def routing(self) -> RoutingConf:
        return self._read("routing")

    @cached_property
    def serving(self) -> ServingConf:
        return self._read("serving")

    def check(self) -> None:
        """Reads every file now, so a bad one stops a flow before its first step."""
        for name in _FILES:
            getattr(self, name)


def default_folder() -> Path:
    """The defaults shipped inside the package."""
    from importlib.resources import files

    return Path(str(files("cadence.conf")))
