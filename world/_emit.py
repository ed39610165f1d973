"""Turning the simulator's index arrays into Arrow batches of the raw tables' schemas."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cadence.ingest import _tables as T
from cadence.world import _params as P

_ENUMS = {
    "channel": T.CHANNELS,
    "carrier": P.CARRIERS,
    "zone": T.ZONES,
    "device": T.DEVICES,
    "category": T.CATEGORIES,
    "action": T.CART_ACTIONS,
    "return_reason": T.RETURN_REASONS,
    "contact_channel": T.CONTACT_CHANNELS,
    "contact_reason": T.CONTACT_REASONS,
    # What shoppers type: a category in their words, or something vague.
    "query": tuple(c.replace("_", " ") for c in T.CATEGORIES) + ("deals",),
    "membership": T.MEMBERSHIPS,
    "gender": T.GENDERS,
    "age_band": T.AGE_BANDS,
    "node_kind": T.NODE_KINDS,
}
LOOKUPS: dict[str, pa.Array] = {k: pa.array(list(v)) for k, v in _ENUMS.items()}


@dataclass(frozen=True)
class Lookup:
    """A string column given as indices into a named list of values."""

    name: str
    idx: np.ndarray


@dataclass(frozen=True)
class Nullable:
    """A column with nulls where `mask` is true."""

    values: Any
    mask: np.ndarray


def labels(prefix: str, idx: np.ndarray) -> np.ndarray:
    """Ids as text: `h12` for household 12, `a40017` for address 40017."""
    return np.char.add(prefix, np.asarray(idx, dtype=np.int64).astype(str))


def to_table(name: str, cols: dict[str, Any], lookups: dict[str, pa.Array] | None = None):
    schema = T.SCHEMAS[name]
    table = {lookup_name: arr for lookup_name, arr in LOOKUPS.items()}
    table.update(lookups or {})
    arrays = [_array(cols[f.name], f.type, table) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _array(value: Any, typ: pa.DataType, lookups: dict[str, pa.Array]) -> pa.Array:
    if isinstance(value, Nullable):
        inner = _array(value.values, typ, lookups)
        mask = pa.array(np.asarray(value.mask, dtype=bool))
        return pa.compute.if_else(mask, pa.scalar(None, typ), inner)
    if isinstance(value, Lookup):
        return lookups[value.name].take(pa.array(np.asarray(value.idx, dtype=np.int64)))
    arr = np.asarray(value)
    if pa.types.is_timestamp(typ):
        return pa.array(arr.astype(np.int64)).cast(typ)
    if pa.types.is_date32(typ):
        return pa.array(arr.astype("datetime64[D]"))
    return pa.array(arr).cast(typ)


class Batches:
    """Collects a day's events per table and hands them out as Arrow tables on flush."""

    def __init__(self, ids, geo, n_nodes: int, n_sku: int, start) -> None:
        self.lookups = {"user": ids.user, "sku": ids.sku, "node": ids.node}
        self.geo = geo
        self.start = np.datetime64(start, "D")
        self.parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.shipped = np.zeros((n_nodes, n_sku), dtype=np.int64)
        self.received = np.zeros((n_nodes, n_sku), dtype=np.int64)
        geo_names = {
            "city_name": geo.city_name,
            "province_name": geo.province_name[geo.city_province],
            "region_name": np.array(_region_names())[geo.city_region],
        }
        for key, values in geo_names.items():
            self.lookups[key] = pa.array(values.tolist())

    def add(self, table: str, **cols: Any) -> None:
        self.parts[table].append(cols)

    def city_columns(self, city: np.ndarray) -> dict[str, Any]:
        return {
            "city": Lookup("city_name", city),
            "province": Lookup("province_name", city),
            "region": Lookup("region_name", city),
            "city_tier": self.geo.city_tier[city],
        }

    def note_shipped(self, node: np.ndarray, sku: np.ndarray, qty: np.ndarray) -> None:
        np.add.at(self.shipped, (node, sku), qty)

    def note_received(self, rows: np.ndarray, received: np.ndarray) -> None:
        self.received[rows] += received

    def inventory_day(self, day: int, carried: np.ndarray, stock: np.ndarray) -> None:
        node, sku = np.nonzero(carried)
        self.add(
            "inventory",
            date=np.full(node.size, self.start + day),
            node_id=Lookup("node", node),
            sku=Lookup("sku", sku),
            on_hand=stock[node, sku] + self.shipped[node, sku],
            received=self.received[node, sku],
            shipped=self.shipped[node, sku],
        )
        self.shipped[:] = 0
        self.received[:] = 0

    def flush(self) -> Iterator[tuple[str, pa.Table]]:
        for name in sorted(self.parts):
            parts = self.parts[name]
            cols = {c: _concat([p[c] for p in parts]) for c in parts[0]}
            yield name, to_table(name, cols, self.lookups)
        self.parts.clear()


def _concat(values: list[Any]) -> Any:
    """Joins one column's daily pieces before a single conversion to Arrow."""
    first = values[0]
    if isinstance(first, Lookup):
        return Lookup(first.name, np.concatenate([np.asarray(v.idx) for v in values]))
    if isinstance(first, Nullable):
        return Nullable(
            _concat([v.values for v in values]), np.concatenate([v.mask for v in values])
        )
    return np.concatenate([np.asarray(v) for v in values])


def _region_names() -> tuple[str, ...]:
    from cadence.world._geo import REGIONS

    return REGIONS
