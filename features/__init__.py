"""Features: the user-behaviour feature catalogue, the engine that computes it, the Feast repo.

Every feature is declared once (`features.catalogue`), with its formula written against Ibis,
so the same definitions run on DuckDB (in-process, the default) and on Spark. A feature as of
snapshot t uses only events strictly before t. The `btyd` family is a model instead: BG/NBD
(`features._btyd`), fitted per snapshot in Python on the engine's rows, so both engines agree.
The engine returns Arrow tables; the CLI writes them as the Feast offline files (one per
family), registers them in Feast and materialises the latest snapshot to the online store
(SQLite by default, Redis in production).
"""

from cadence.features._docs import catalogue_markdown
from cadence.features._engine import (
    ENGINES,
    FeatureInputError,
    Prepared,
    Result,
    available,
    compute,
    connect,
    load_sources,
    prepare,
    split_by_family,
)
from cadence.features._manifest import (
    FeatureManifest,
    MissingFeatures,
    read_manifest,
    write_manifest,
)
from cadence.features._snapshots import check_range, default_grid, parse_snapshots

__all__ = [
    "ENGINES",
    "FeatureInputError",
    "FeatureManifest",
    "MissingFeatures",
    "Prepared",
    "Result",
    "available",
    "catalogue_markdown",
    "check_range",
    "compute",
    "connect",
    "default_grid",
    "load_sources",
    "parse_snapshots",
    "prepare",
    "read_manifest",
    "split_by_family",
    "write_manifest",
]
