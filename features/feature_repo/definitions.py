"""Feast declarations: entities, one FeatureView per family, one FeatureService per model version.

Declarations only. The features are computed by `features._engine` and written as one Parquet
file per family; each view reads its family's file. The views' schemas come from the catalogue,
so a feature declared there is served here under the same name and type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
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


def definitions(offline_dir: Path, families: Mapping[str, Collection[str]]) -> list:
    """Everything to register, for the user families built in `offline_dir` (family -> the
    feature columns its file holds)."""
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
    if (offline_dir / "nodes.parquet").exists():
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


# The champion's latest scores, served to the merge service by user; the score flow writes the
# list and points this view at it.
SCORES_VIEW = "repurchase_scores"
_SCORE_FIELDS = {
    "probability": Float64,
    "band": String,
    "model_version": String,
    "driver_1": String,
    "driver_2": String,
    "driver_3": String,
}


def scores_view(path: Path) -> list:
    """The scores view over one list's Parquet file, and its service `repurchase_scores_v1`."""
    source = FileSource(
        name=f"{SCORES_VIEW}_source", path=str(Path(path).resolve()), timestamp_field="as_of"
    )
    view = FeatureView(
        name=SCORES_VIEW,
        entities=[user],
        ttl=TTL,
        schema=[Field(name=n, dtype=t) for n, t in _SCORE_FIELDS.items()],
        source=source,
        online=True,
        description="the champion's latest repurchase scores",
    )
    service = FeatureService(
        name=f"{SCORES_VIEW}_v1", features=[view], description="latest repurchase scores"
    )
    return [user, view, service]
