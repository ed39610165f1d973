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

    source: Literal["world", "orders"] = Field(default="world", description="world or orders")
    users: int | None = Field(default=None, gt=0, description="world: shoppers [conf]")
    days: int | None = Field(default=None, gt=0, description="world: days simulated [conf]")
    seed: int | None = Field(default=None, ge=0, description="world: random seed [conf]")
    start: dt.date | None = Field(default=None, description="world: first day [conf]")
    file: Path | None = Field(default=None, description="orders: the log, .csv, .parquet or .xlsx")
    customer: str | None = Field(default=None, description="orders: customer id column")
    timestamp: str | None = Field(default=None, description="orders: order time column")
    amount: str | None = Field(default=None, description="orders: amount column")
    quantity: str | None = Field(default=None, description="orders: item count column")
    timestamp_format: str | None = Field(default=None, description="orders: strftime format")
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
            missing = [
                k for k in ("file", "customer", "timestamp", "amount") if not getattr(self, k)
            ]
            if missing:
                raise ValueError(f"source 'orders' needs {', '.join(missing)}")
        return self


class FeaturesParams(_Params):
    snapshots: str | None = Field(
        default=None, description="START:END:7d or d1,d2,... [weekly grid + the data's end]"
    )
    engine: Literal["duckdb", "spark"] = Field(default="duckdb", description="duckdb or spark")
    materialize: bool = Field(default=True, description="register in Feast and materialise")
    force: bool = Field(default=False, description="rebuild even if the raw data is unchanged")


class TrainParams(_Params):
    horizon: int | None = Field(default=None, gt=0, description="days ahead [conf]")


class PromoteParams(_Params):
    reason: str | None = Field(default=None, description="a note recorded with the decision")
    horizon: int | None = Field(default=None, gt=0, description="days ahead [conf]")


class ScoreParams(_Params):
    as_of: dt.date | None = Field(default=None, description="[the latest snapshot]")
    lead_days: int | None = Field(default=None, ge=0, description="contact lead [conf]")
    drift: bool = Field(default=True, description="check drift after scoring")


class PipelineParams(_Params):
    ingest: IngestParams = IngestParams()
    features: FeaturesParams = FeaturesParams()
    train: TrainParams = TrainParams()
    promote: PromoteParams = PromoteParams(reason="pipeline")
    score: ScoreParams = ScoreParams()


PARAMS: dict[str, type[_Params]] = {
    "ingest": IngestParams,
    "build_features": FeaturesParams,
    "train": TrainParams,
    "promote": PromoteParams,
    "score": ScoreParams,
    "pipeline": PipelineParams,
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
