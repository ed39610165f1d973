"""Ingest: the raw tables every data source must produce, their contracts and importers.

A raw dataset is a folder with one Parquet file per table (`SCHEMAS` names them and their
columns) and a `manifest.json` giving the data's source and end. Only `orders` is required, so
a shop with nothing but an order log can run the pipeline. `validate_dir` checks a folder
against the contracts (types, nulls, domains, ranges, keys, foreign keys, nothing after the
data's end) and returns every violation; `import_orders` turns any order log (a row per
order, or a row per line of an order) into a valid `orders` table, with its refunds and
cancellations as a `returns` table. Writes go through `staged_dir` / `write_table_atomic`,
never half-done.
"""

from cadence.ingest._contracts import contract, type_problems
from cadence.ingest._import_orders import (
    BadRow,
    ImportResult,
    OrderLog,
    OrderLogError,
    import_orders,
    read_order_log,
)
from cadence.ingest._import_orders import check_options as check_import_options
from cadence.ingest._io import (
    NotOurs,
    check_replaceable,
    staged_dir,
    write_table_atomic,
    write_text_atomic,
)
from cadence.ingest._manifest import RawManifest, read_manifest, write_manifest
from cadence.ingest._tables import (
    FOREIGN_KEYS,
    KEYS,
    NULLABLE,
    REQUIRED_TABLES,
    SCHEMAS,
    SENSITIVE_COLUMNS,
    TIME_COLUMNS,
)
from cadence.ingest._validate import Violation, read_end, validate_dir, validate_tables

__all__ = [
    "FOREIGN_KEYS",
    "KEYS",
    "NotOurs",
    "NULLABLE",
    "REQUIRED_TABLES",
    "SCHEMAS",
    "SENSITIVE_COLUMNS",
    "TIME_COLUMNS",
    "BadRow",
    "ImportResult",
    "OrderLog",
    "OrderLogError",
    "RawManifest",
    "Violation",
    "check_import_options",
    "check_replaceable",
    "contract",
    "import_orders",
    "read_end",
    "read_manifest",
    "read_order_log",
    "staged_dir",
    "type_problems",
    "validate_dir",
    "validate_tables",
    "write_manifest",
    "write_table_atomic",
    "write_text_atomic",
]
