"""Feast declarations: entities, one FeatureView per family, one FeatureService per model version.

Declarations only. The features are computed by `features._engine` and written as one Parquet
file per family; each view reads its family's file. The views' schemas come from the catalogue,
so a feature declared there is served here under the same name and type.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from cadence.features._catalogue import Family
from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES

user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A shopper"
)
node = Entity(
    name="node", join_keys=["node_id"], value_type=ValueType.STRING, description="A fulfilment node"
)

# Features are rebuilt at least weekly; a row older than this is stale and not served.
TTL = timedelta(days=400)
_TYPES = {"int64": Int64, "float64": Float64}


def _view(
    family: Family, entity: Entity, path: Path, built: Collection[str] | None = None
) -> FeatureView:
    """The family's view over its file; `built`: the feature columns the build wrote (a row
    family computed without some of its inputs, as on an orders-only import, has fewer)."""
    source = FileSource(name=f"{family.name}_source", path=str(path), timestamp_field="snapshot_at")
    return FeatureView(
        name=family.name,
        entities=[entity],
        ttl=TTL,
        schema=[
            Field(name=f.name, dtype=_TYPES[f.dtype], description=f.description)
            for f in family.features
            if built is None or f.name in built
        ],
        source=source,
        online=True,
        description=family.description,
    )


def definitions(
    offline_dir: Path, families: Mapping[str, Collection[str]], *, nodes: bool | None = None
) -> list:
    """Everything to register, for the user families built in `offline_dir` (family -> the
    feature columns its file holds) and, if `nodes` (default: when the build wrote
    nodes.parquet), the node view and its service."""
    offline_dir = Path(offline_dir).resolve()
    user_views = [
        _view(f, user, offline_dir / "users" / f"{f.name}.parquet", families[f.name])
        for f in USER_FAMILIES
        if f.name in families
    ]
    objects: list = [user, node, *user_views]
    # Model versions are bundles of features: repurchase_v1 is every user family.
    objects.append(
        FeatureService(
            name="repurchase_v1",
            features=user_views,
            description="repurchase propensity and timing, version 1",
        )
    )
    if nodes is None:
        nodes = (offline_dir / "nodes.parquet").exists()
    if nodes:
        node_view = _view(NODE_FAMILIES[0], node, offline_dir / "nodes.parquet")
        objects += [
            node_view,
            FeatureService(
                name="routing_v1",
                features=[node_view],
                description="routing cost and time, version 1",
            ),
        ]
    return objects


# Each registered model's latest scores, served to the merge service by user. The score step
# writes a new list folder per run and moves lists/<model>/latest to it, so a view's source
# path stays the same from run to run and only the file behind it changes.
SCORES_VIEW = "repurchase_scores"  # the default model's (`repurchase`) view
LATEST_SCORES = Path("latest") / "scores.parquet"
_SCORE_FIELDS = {
    "percentile": Int64,
    "band": String,
    "contact_date": UnixTimestamp,
    "expected_next_order_date": UnixTimestamp,
    "driver_1": String,
    "driver_2": String,
    "driver_3": String,
    "model_version": String,
}
_PROBABILITY = re.compile(r"p_order_\d+d")


def scores_view_name(model: str) -> str:
    """`repurchase` -> `repurchase_scores`, `repurchase-7d` -> `repurchase_7d_scores` (Feast
    names take no '-')."""
    return f"{model.replace('-', '_')}_scores"


def scores_view(model: str, lists_dir: Path) -> list:
    """The view over a registered model's latest list (`<lists_dir>/<model>/latest/
    scores.parquet`, which must exist: its probability column names the horizon) and its
    service `<view>_v1`."""
    # Absolute, but through the `latest` link, never resolved past it.
    path = Path(lists_dir).resolve() / model / LATEST_SCORES
    columns = pq.read_schema(path).names
    probability = [c for c in columns if _PROBABILITY.fullmatch(c)]
    if len(probability) != 1:
        raise ValueError(f"{path}: expected one p_order_<days>d column, found {probability}")
    name = scores_view_name(model)
    source = FileSource(name=f"{name}_source", path=str(path), timestamp_field="as_of")
    view = FeatureView(
        name=name,
        entities=[user],
        ttl=TTL,
        schema=[
            Field(name=n, dtype=t) for n, t in {probability[0]: Float64, **_SCORE_FIELDS}.items()
        ],
        source=source,
        online=True,
        description=f"the latest scores of the {model} model's champion",
    )
    service = FeatureService(
        name=f"{name}_v1", features=[view], description=f"latest {model} scores"
    )
    return [view, service]


def published_scores_views(lists_dir: Path) -> list:
    """The scores views and services of every model with a latest list in `lists_dir`."""
    lists_dir = Path(lists_dir)
    found = sorted(lists_dir.glob(f"*/{LATEST_SCORES.as_posix()}")) if lists_dir.is_dir() else []
    return [o for path in found for o in scores_view(path.parent.parent.name, lists_dir)]
