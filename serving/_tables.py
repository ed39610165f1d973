"""The service's state in SQL (SQLAlchemy 2 declarative tables; `migrations/` creates them).

Offers, confirmations and orders change state; every change is also appended to `audit_log`,
which is never updated or deleted (the database refuses: see the first migration's triggers).
`user_events` is what a shopper is told (their feed), `events` the shop's events as received,
each once (their `event_id` is the client's, so a replay is recognised).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Stamp(TypeDecorator):
    """A UTC instant. SQLite keeps no zone, so it stores naive UTC and gets UTC back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime {value} reached the database; times are UTC")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


ROLES = ("service", "marketing", "reviewer", "admin")
LIVE = "state IN ('open', 'confirmed')"


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    # SHA-256 of the whole key: keys are 256-bit random, so a fast hash is safe and a lookup
    # by hash needs no per-key salt.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(Stamp())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Stamp())
    note: Mapped[str] = mapped_column(String(200), default="")


class ServiceMeta(Base):
    """One row per setting the database itself holds (the log pseudonym key)."""

    __tablename__ = "service_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class UserState(Base):
    """What a shopper decided: profiling opt-out, consent to be contacted."""

    __tablename__ = "user_states"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profiling_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    profiling_withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[dt.datetime] = mapped_column(Stamp())
    last_exit_at: Mapped[dt.datetime | None] = mapped_column(Stamp())


class Offer(Base):
    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_user_created", "user_id", "created_at"),
        # At most one live offer per shopper, whatever the concurrent requests.
        Index(
            "uq_offers_live_user",
            "user_id",
            unique=True,
            sqlite_where=text(LIVE),
            postgresql_where=text(LIVE),
        ),
    )

    offer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    cohort: Mapped[str] = mapped_column(String(64))
    incentive: Mapped[str] = mapped_column(String(32))
    discount_rate: Mapped[float] = mapped_column(Float)
    suggested_date: Mapped[dt.date] = mapped_column(Date)
    expected_order_date: Mapped[dt.date] = mapped_column(Date)
    cancel_until: Mapped[dt.datetime] = mapped_column(Stamp())
    consent_version: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(Stamp())
    expires_at: Mapped[dt.datetime] = mapped_column(Stamp())
    # open, confirmed, cancelled, exited, expired or dispatched
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[dt.datetime] = mapped_column(Stamp())


class Confirmation(Base):
    """The explicit opt-in: one per offer, whatever the retries."""

    __tablename__ = "confirmations"

    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.offer_id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    consent_version: Mapped[str] = mapped_column(String(32))
    confirmed_at: Mapped[dt.datetime] = mapped_column(Stamp())
    key_id: Mapped[str] = mapped_column(String(16))


class Order(Base):
    """An order the shop told the service of; `merging` ones are consolidation's to plan."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_ship_date_state", "ship_date", "state"),)

    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    offer_id: Mapped[str | None] = mapped_column(ForeignKey("offers.offer_id"), unique=True)
    address_id: Mapped[str] = mapped_column(String(64))
    area: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str] = mapped_column(String(16))
    carrier: Mapped[str] = mapped_column(String(16))
    distance_km: Mapped[float] = mapped_column(Float)
    placed_at: Mapped[dt.datetime] = mapped_column(Stamp())
    ship_date: Mapped[dt.date] = mapped_column(Date)
    promised_date: Mapped[dt.date] = mapped_column(Date)
    weight_kg: Mapped[float] = mapped_column(Float, default=0.0)
    volume_cm3: Mapped[float] = mapped_column(Float, default=0.0)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    # normal (never merged), merging (a confirmed offer's), planned, released (left its
    # merge; ships as a normal order), cancelled or dispatched
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[dt.datetime] = mapped_column(Stamp())


class OrderItem(Base):
    __tablename__ = "order_items"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.order_id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[float] = mapped_column(Float)
    weight_kg: Mapped[float] = mapped_column(Float)
    volume_cm3: Mapped[float] = mapped_column(Float)
    fragile: Mapped[bool] = mapped_column(Boolean)


class Event(Base):
    """A shop event as received, once: a replay of its `event_id` returns this outcome."""

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(Stamp())
    outcome: Mapped[dict] = mapped_column(JSON)


class UserEvent(Base):
    """What the shopper is told: their feed at GET /v1/users/{id}/events."""

    __tablename__ = "user_events"
    __table_args__ = (Index("ix_user_events_user_seq", "user_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    offer_id: Mapped[str | None] = mapped_column(String(36))
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(Stamp())


class AuditLog(Base):
    """Every state change, appended; never updated or deleted."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(Stamp())
    actor: Mapped[str] = mapped_column(String(32))  # an API key's id, or "system"
    action: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    offer_id: Mapped[str | None] = mapped_column(String(36))
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict] = mapped_column(JSON)


class Plan(Base):
    """A consolidation run's shipment plan for one ship date; the latest one for a date holds."""

    __tablename__ = "plans"

    plan_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    ship_date: Mapped[dt.date] = mapped_column(Date, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(Stamp())
    summary: Mapped[dict] = mapped_column(JSON)


class Parcel(Base):
    __tablename__ = "parcels"

    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.plan_id"), primary_key=True)
    parcel_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    address_id: Mapped[str] = mapped_column(String(64))
    area: Mapped[str] = mapped_column(String(64))
    wave: Mapped[int] = mapped_column(Integer)
    day_offset: Mapped[int] = mapped_column(Integer)
    n_orders: Mapped[int] = mapped_column(Integer)
    billed_kg: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)
    co2_kg: Mapped[float] = mapped_column(Float)


class ParcelOrder(Base):
    """Which parcel of a plan each order ships in: one parcel per order and plan."""

    __tablename__ = "parcel_orders"

    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.plan_id"), primary_key=True)
    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parcel_id: Mapped[int] = mapped_column(Integer)


class Stock(Base):
    """One node's units of one SKU: what is on its shelves and how much of it open orders hold.

    Every channel draws on the same row: an online order routed here reserves units, a store's
    counter sale and a dispatch take them off the shelf. Each change is one conditional UPDATE
    (`available >= wanted`), so two orders never take the last unit, whatever the interleaving.
    """

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="ck_stock_on_hand"),
        CheckConstraint("reserved >= 0", name="ck_stock_reserved"),
        # Routing reads an order's SKUs at every node.
        Index("ix_stock_sku", "sku"),
    )

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[dt.datetime] = mapped_column(Stamp())


class WaveLoad(Base):
    """Parcels already given to one node's dispatch wave: the day's running total."""

    __tablename__ = "wave_loads"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wave_at: Mapped[dt.datetime] = mapped_column(Stamp(), primary_key=True)
    parcels: Mapped[int] = mapped_column(Integer, default=0)


class Route(Base):
    """Where one order ships from (or is picked up): its parcels, their windows, its state."""

    __tablename__ = "routes"

    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    delivery: Mapped[str] = mapped_column(String(16))  # ship or pickup
    # reserved, released (cancelled: units and capacity given back) or dispatched
    state: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(32))
    routed_at: Mapped[dt.datetime] = mapped_column(Stamp())
    promised_by: Mapped[dt.datetime] = mapped_column(Stamp())
    changed_at: Mapped[dt.datetime] = mapped_column(Stamp())
    # The decision as answered: parcels with node, carrier, wave, window and reason.
    detail: Mapped[dict] = mapped_column(JSON)


class Reservation(Base):
    """Units of one SKU an order holds at one node, until released or dispatched."""

    __tablename__ = "reservations"

    order_id: Mapped[int] = mapped_column(ForeignKey("routes.order_id"), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    wave_at: Mapped[dt.datetime] = mapped_column(Stamp())
