"""The raw tables: names, columns and Arrow types, shared by every data source.

The simulated world writes exactly these schemas, the order importer writes the ``orders`` one,
and the contracts in ``_contracts.py`` check data against them. Timestamps are UTC, microseconds.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

CATEGORIES = (
    "infant_formula",
    "diapers",
    "pet_food",
    "coffee",
    "skincare",
    "household",
    "snacks",
    "electronics",
    "apparel",
    "books",
    "appliances",
    "toys",
)
NODE_KINDS = ("regional_warehouse", "forward_warehouse", "store")
ZONES = ("same_city", "same_province", "cross_region", "remote")
CHANNELS = ("app", "web", "mini_program", "store")
DEVICES = ("ios", "android", "web", "mini_program")
MEMBERSHIPS = ("basic", "plus", "vip")
GENDERS = ("female", "male", "undisclosed")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
CART_ACTIONS = ("add", "remove", "purchase")
RETURN_REASONS = ("damaged", "not_as_described", "changed_mind")
# What an imported order log tells of a return: a cancelled order, or a refund (a negative
# amount or quantity). Such rows have no sku, and an order_id only when the log links them.
IMPORTED_RETURN_REASONS = ("cancelled", "refund")
CONTACT_CHANNELS = ("phone", "chat", "email")
# What a shopper consents to: `profiling` covers scoring them for marketing, `contact` sending
# them offers.
CONSENT_PURPOSES = ("profiling", "contact")
# Offers to order early: the incentive, and what the shopper did. `blocked`: not delivered, as
# the shopper's profiling or contact consent was withdrawn when it was sent.
INCENTIVES = ("discount", "express_upgrade")
OFFER_RESPONSES = ("accepted", "cancelled", "ignored", "blocked")
CONTACT_REASONS = ("late_delivery", "damaged", "return", "account", "other")

# Columns that hold sensitive attributes: present for audits, never model inputs.
SENSITIVE_COLUMNS = ("gender", "age_band")

SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema(
        [
            ("user_id", pa.string()),
            # Shoppers of one household share its address; merging parcels goes by address.
            ("household_id", pa.string()),
            ("address_id", pa.string()),
            ("signup_at", TS),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("city", pa.string()),
            ("province", pa.string()),
            ("region", pa.string()),
            ("city_tier", pa.int8()),
            ("membership", pa.string()),
            ("device", pa.string()),
            ("gender", pa.string()),
            ("age_band", pa.string()),
        ]
    ),
    "products": pa.schema(
        [
            ("sku", pa.string()),
            ("category", pa.string()),
            ("price", pa.float64()),
            ("weight_kg", pa.float64()),
            ("volume_cm3", pa.float64()),
            ("fragile", pa.bool_()),
        ]
    ),
    "nodes": pa.schema(
        [
            ("node_id", pa.string()),
            ("kind", pa.string()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("city", pa.string()),
            ("province", pa.string()),
            ("region", pa.string()),
            ("daily_capacity", pa.int32()),
        ]
    ),
    # Each node's dispatch waves: cut-off (minutes after midnight, UTC), capacity in parcels,
    # and the handling cost of a dispatch batch (one node and wave with at least one parcel).
    "dispatch_waves": pa.schema(
        [
            ("node_id", pa.string()),
            ("wave", pa.int32()),
            ("cutoff_minute", pa.int32()),
            ("capacity", pa.int32()),
            ("batch_cost", pa.float64()),
        ]
    ),
    "inventory": pa.schema(
        [
            ("date", pa.date32()),
            ("node_id", pa.string()),
            ("sku", pa.string()),
            ("on_hand", pa.int32()),
            ("received", pa.int32()),
            ("shipped", pa.int32()),
        ]
    ),
    "sessions": pa.schema(
        [
            ("session_id", pa.int64()),
            ("user_id", pa.string()),
            ("started_at", TS),
            ("device", pa.string()),
            ("pages", pa.int16()),
            ("dwell_seconds", pa.float64()),
            ("category", pa.string()),
            ("categories_viewed", pa.int8()),
        ]
    ),
    "cart_events": pa.schema(
        [
            ("event_id", pa.int64()),
            ("user_id", pa.string()),
            ("ts", TS),
            ("sku", pa.string()),
            ("action", pa.string()),
            ("quantity", pa.int16()),
        ]
    ),
    "searches": pa.schema(
        [
            ("search_id", pa.int64()),
            ("user_id", pa.string()),
            ("ts", TS),
            ("query", pa.string()),
            ("category", pa.string()),
            ("results", pa.int32()),
        ]
    ),
    "coupons": pa.schema(
        [
            ("coupon_id", pa.int64()),
            ("user_id", pa.string()),
            ("issued_at", TS),
            ("expires_at", TS),
            ("discount_rate", pa.float64()),
            ("redeemed_at", TS),
            ("order_id", pa.int64()),
        ]
    ),
    "orders": pa.schema(
        [
            ("order_id", pa.int64()),
            ("user_id", pa.string()),
            ("ordered_at", TS),
            ("channel", pa.string()),
            ("n_items", pa.int32()),
            ("amount", pa.float64()),
            ("discount", pa.float64()),
        ]
    ),
    "order_items": pa.schema(
        [
            ("order_id", pa.int64()),
            ("line", pa.int16()),
            ("sku", pa.string()),
            ("quantity", pa.int16()),
            ("unit_price", pa.float64()),
            ("shipment_id", pa.int64()),
            ("cancelled", pa.bool_()),
        ]
    ),
    "shipments": pa.schema(
        [
            ("shipment_id", pa.int64()),
            ("order_id", pa.int64()),
            ("node_id", pa.string()),
            ("carrier", pa.string()),
            ("zone", pa.string()),
            ("distance_km", pa.float64()),
            ("actual_weight_kg", pa.float64()),
            ("volume_cm3", pa.float64()),
            ("billed_weight_kg", pa.float64()),
            ("cost", pa.float64()),
            # The cut-off of the dispatch wave the parcel left with: with node_id, its batch.
            ("wave_at", TS),
            ("shipped_at", TS),
            ("promised_at", TS),
            ("delivered_at", TS),
            ("late", pa.bool_()),
            ("damaged", pa.bool_()),
        ]
    ),
    "returns": pa.schema(
        [
            ("return_id", pa.int64()),
            ("order_id", pa.int64()),
            ("user_id", pa.string()),
            ("sku", pa.string()),
            ("quantity", pa.int16()),
            ("requested_at", TS),
            ("reason", pa.string()),
            ("refund", pa.float64()),
        ]
    ),
    "consents": pa.schema(
        [
            ("user_id", pa.string()),
            ("changed_at", TS),
            ("purpose", pa.string()),
            ("granted", pa.bool_()),
        ]
    ),
    "offers": pa.schema(
        [
            ("offer_id", pa.int64()),
            ("user_id", pa.string()),
            ("sent_at", TS),
            ("incentive", pa.string()),
            ("discount_rate", pa.float64()),  # 0 for a free upgrade
            ("suggested_date", pa.date32()),
            ("response", pa.string()),
            ("responded_at", TS),  # accepting, or cancelling after accepting
            ("order_id", pa.int64()),  # the order an accepted offer became
        ]
    ),
    "address_changes": pa.schema(
        [
            ("user_id", pa.string()),
            ("address_id", pa.string()),  # the new address: a move never reuses one
            ("changed_at", TS),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("city", pa.string()),
            ("province", pa.string()),
            ("region", pa.string()),
            ("city_tier", pa.int8()),
        ]
    ),
    # The weather the shop can see each day: whether a storm slows parcels in a region. A
    # routing decision reads the day it is made for, as a shop reads a forecast.
    "weather": pa.schema(
        [
            ("date", pa.date32()),
            ("region", pa.string()),
            ("storm", pa.bool_()),
        ]
    ),
    "service_contacts": pa.schema(
        [
            ("contact_id", pa.int64()),
            ("user_id", pa.string()),
            ("ts", TS),
            ("channel", pa.string()),
            ("reason", pa.string()),
            ("order_id", pa.int64()),
        ]
    ),
}

# Only `orders` is required: a shop that has nothing but an order log can still run the
# repurchase pipeline. Every other table is optional and checked when present.
REQUIRED_TABLES = ("orders",)

# Columns that may be null; every other column must be filled.
NULLABLE: dict[str, tuple[str, ...]] = {
    "searches": ("category",),
    "coupons": ("redeemed_at", "order_id"),
    "orders": ("channel",),
    "returns": ("order_id", "sku"),
    "order_items": ("shipment_id",),
    "shipments": ("wave_at", "shipped_at", "delivered_at", "late", "damaged"),
    "service_contacts": ("order_id",),
    "offers": ("responded_at", "order_id"),
}

# Primary keys (unique, not null).
KEYS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "products": ("sku",),
    "nodes": ("node_id",),
    "dispatch_waves": ("node_id", "wave"),
    "inventory": ("date", "node_id", "sku"),
    "sessions": ("session_id",),
    "cart_events": ("event_id",),
    "searches": ("search_id",),
    "coupons": ("coupon_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "line"),
    "shipments": ("shipment_id",),
    "returns": ("return_id",),
    "address_changes": ("user_id", "changed_at"),
    "consents": ("user_id", "changed_at", "purpose"),
    "service_contacts": ("contact_id",),
    "offers": ("offer_id",),
    "weather": ("date", "region"),
}

# (table, column) -> (referenced table, referenced column); checked when both tables exist.
FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    **{
        (t, "user_id"): ("users", "user_id")
        for t in (
            "sessions",
            "cart_events",
            "searches",
            "coupons",
            "orders",
            "returns",
            "address_changes",
            "consents",
            "service_contacts",
            "offers",
        )
    },
    ("inventory", "node_id"): ("nodes", "node_id"),
    ("dispatch_waves", "node_id"): ("nodes", "node_id"),
    ("inventory", "sku"): ("products", "sku"),
    ("cart_events", "sku"): ("products", "sku"),
    ("order_items", "order_id"): ("orders", "order_id"),
    ("order_items", "sku"): ("products", "sku"),
    ("order_items", "shipment_id"): ("shipments", "shipment_id"),
    ("shipments", "order_id"): ("orders", "order_id"),
    ("shipments", "node_id"): ("nodes", "node_id"),
    ("returns", "order_id"): ("orders", "order_id"),
    ("returns", "sku"): ("products", "sku"),
    ("coupons", "order_id"): ("orders", "order_id"),
    ("service_contacts", "order_id"): ("orders", "order_id"),
    ("offers", "order_id"): ("orders", "order_id"),
}

# Timestamp columns that must not lie after the data's end.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("signup_at",),
    "sessions": ("started_at",),
    "cart_events": ("ts",),
    "searches": ("ts",),
    "coupons": ("issued_at", "redeemed_at"),
    "orders": ("ordered_at",),
    "shipments": ("wave_at", "shipped_at", "delivered_at"),
    "returns": ("requested_at",),
    "address_changes": ("changed_at",),
    "consents": ("changed_at",),
    "service_contacts": ("ts",),
    "offers": ("sent_at", "responded_at"),
}
