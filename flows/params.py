"""The flows' parameters: Pydantic models, so the Prefect UI shows a form and `cadence run`
validates `--name value` pairs before anything runs. Importing this needs no Prefect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestParams(_Params):
    """Where the raw data comes from: the simulated world (default) or a shop's order log."""

    # A column named 2024 is a column name, not a number.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    source: Literal["world", "orders"] = Field(default="world", description="world or orders")
    users: int | None = Field(default=None, gt=0, description="world: shoppers [conf]")
    days: int | None = Field(default=None, gt=0, description="world: days simulated [conf]")
    seed: int | None = Field(default=None, ge=0, description="world: random seed [conf]")
    start: dt.date | None = Field(default=None, description="world: first day [conf]")
    file: Path | None = Field(default=None, description="orders: the log, .csv, .parquet or .xlsx")
    customer: str | None = Field(default=None, description="orders: customer id column")
    timestamp: str | None = Field(default=None, description="orders: order time column")
    amount: str | None = Field(default=None, description="orders: amount column (or --unit-price)")
    unit_price: str | None = Field(
        default=None, description="orders: price per item column, amount = quantity x price"
    )
    quantity: str | None = Field(default=None, description="orders: item count column")
    order_id: str | None = Field(
        default=None, description="orders: order id column; rows sharing one are its lines"
    )
    timestamp_format: str | None = Field(
        default=None, description="orders: strftime format [ISO 8601, or proven by the column]"
    )
    timezone: str = Field(default="UTC", description="orders: zone of timestamps without one")
    as_of: dt.date | None = Field(
        default=None, description="orders: the log's last day [the last order]"
    )
    decimal_comma: bool = Field(default=False, description="orders: a CSV's 12,50 is 12.50")
    cancelled: str | None = Field(
        default=None, description="orders: COLUMN (yes/no) or COLUMN=VALUE,... marking returns"
    )
    cancelled_prefix: str | None = Field(
        default=None, description="orders: order ids starting with it are cancellations"
    )
    encoding: str | None = Field(
        default=None, description="orders: a CSV's text encoding [UTF-8 or detected]"
    )
    delimiter: str | None = Field(
        default=None, description="orders: a CSV's field delimiter [detected, else ,]"
    )
    sheet: str | None = Field(default=None, description="orders: an .xlsx's sheet [the first]")
    on_bad_rows: Literal["fail", "skip"] = Field(
        default="fail", description="orders: fail (write nothing) or skip bad rows"
    )
    force: bool = Field(default=False, description="regenerate or re-import even if unchanged")
    replace: bool = Field(
        default=False, description="orders: import over a simulated world (its truth goes too)"
    )

    @model_validator(mode="after")
    def _orders_named(self) -> IngestParams:
        if self.source == "orders":
            missing = [k for k in ("file", "customer", "timestamp") if not getattr(self, k)]
            if not (self.amount or self.unit_price):
                missing.append("amount or unit_price")
            if missing:
                raise ValueError(f"source 'orders' needs {', '.join(missing)}")
            # The checks that need no file, before the flow starts.
            from cadence.ingest import check_import_options

            check_import_options(
                **{k: v for k, v in self.import_options().items() if k in _CHECKED}
            )
        return self

    def import_options(self) -> dict[str, Any]:
        """The order log's import options, as `flows.steps.ingest.import_order_log` takes
        them (every option `cadence data import-orders` has)."""
        return {name: getattr(self, name) for name in IMPORT_OPTIONS}


# The parameters that are options of the order-log import, by the step's keyword names.
IMPORT_OPTIONS = (
    "customer",
    "timestamp",
    "amount",
    "unit_price",
    "quantity",
    "order_id",
    "timestamp_format",
    "timezone",
    "as_of",
    "decimal_comma",
    "cancelled",
    "cancelled_prefix",
    "encoding",
    "delimiter",
    "sheet",
    "on_bad_rows",
)
_CHECKED = (
    "amount",
    "unit_price",
    "quantity",
    "timestamp_format",
    "timezone",
    "as_of",
    "order_id",
    "cancelled_prefix",
)


class FeaturesParams(_Params):
    snapshots: str | None = Field(
        default=None, description="START:END:7d or d1,d2,... [weekly grid + the data's end]"
    )
    engine: Literal["duckdb", "spark"] = Field(default="duckdb", description="duckdb or spark")
    materialize: bool = Field(default=True, description="register in Feast and materialise")
    force: bool = Field(default=False, description="rebuild even if the raw data is unchanged")


class TrainParams(_Params):
    horizon: int | None = Field(default=None, gt=0, description="days ahead [conf]")


class AuditParams(_Params):
    model: str | None = Field(
        default=None, description="models:/NAME/VERSION [the newest challenger, else champion]"
    )
    out: Path | None = Field(default=None, description="also copy the report files here")
    horizon: int | None = Field(default=None, gt=0, description="days ahead [conf]")


class PromoteParams(_Params):
    reason: str | None = Field(default=None, description="a note recorded with the decision")
    horizon: int | None = Field(default=None, gt=0, description="days ahead [conf]")


class ScoreParams(_Params):
    as_of: dt.date | None = Field(default=None, description="[the latest snapshot]")
    lead_days: int | None = Field(default=None, ge=0, description="contact lead [conf]")
    drift: bool = Field(default=True, description="check drift after scoring")


class ConsolidateParams(_Params):
    ship_date: dt.date | None = Field(default=None, description="[today, UTC]")


class RouteParams(_Params):
    days: int | None = Field(
        default=None, ge=1, description="Held-out days to replay [conf/routing.yaml holdout_days]"
    )
    reason: str | None = Field(default=None, description="A note recorded with the promotion")


class PipelineParams(_Params):
    ingest: IngestParams = IngestParams()
    features: FeaturesParams = FeaturesParams()
    train: TrainParams = TrainParams()
    audit: AuditParams = AuditParams()
    promote: PromoteParams = PromoteParams(reason="pipeline")
    score: ScoreParams = ScoreParams()
    route: RouteParams = RouteParams(reason="pipeline")


PARAMS: dict[str, type[_Params]] = {
    "ingest": IngestParams,
    "build_features": FeaturesParams,
    "train": TrainParams,
    "audit": AuditParams,
    "promote": PromoteParams,
    "score": ScoreParams,
    "pipeline": PipelineParams,
    "consolidate": ConsolidateParams,
    "route": RouteParams,
}


def describe(model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per parameter: `--name  description [default: value]`; nested models dotted."""
    lines = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation: Any = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += describe(annotation, f"{key}.")
            continue
        default = field.get_default(call_default_factory=True)
        text, _, note = (field.description or "").partition(" [")
        shown = default if default is not None else (note.rstrip("]") or "unset")
        if text.startswith("["):  # only a note, as "[the latest snapshot]"
            text, shown = "", text.strip("[]")
        lines.append(f"--{key.replace('_', '-')}  {text}  [default: {shown}]")
    return lines
