"""The API's typed bodies: what comes in (validated, bounded) and what goes out.

Every string and number in has a bound, so a malformed or huge value is a 422 naming its field,
never an error deeper in.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from cadence.serving._tables import ROLES

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
OrderId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Channel = Literal["app", "web", "mini_program", "store", "phone", "email"]
Zone = Literal["same_city", "same_province", "cross_region", "remote"]
Stamp = Annotated[dt.datetime, Field(description="an instant with its UTC offset")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """Every error's body: a stable code, and a message naming what is wrong."""

    code: str
    message: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


class OfferPublic(BaseModel):
    offer_id: str
    user_id: str
    cohort: str
    incentive: str
    discount_rate: float
    suggested_date: dt.date
    cancel_until: dt.datetime
    expires_at: dt.datetime
    consent_version: str
    state: str


class OfferAnswer(BaseModel):
    """An offer, or none with the reason code and its meaning."""

    offer: OfferPublic | None = None
    reason: str | None = None
    message: str | None = None


class ConfirmIn(_In):
    channel: Channel
    # The consent text version the shopper was shown and agreed to.
    consent_version: Annotated[str, Field(min_length=1, max_length=32)]


class ConfirmationPublic(BaseModel):
    offer_id: str
    user_id: str
    channel: str
    consent_version: str
    confirmed_at: dt.datetime
    # False when this request made the confirmation; True for a retry or a second confirmation.
    replayed: bool


class ChannelIn(_In):
    channel: Channel


class UserStatePublic(BaseModel):
    user_id: str
    profiling_opt_out: bool
    profiling_withdrawn: bool
    contact_withdrawn: bool
    changed_at: dt.datetime


class ItemIn(_In):
    sku: Id
    category: Id | None = None
    quantity: Annotated[int, Field(ge=1, le=1000)]
    unit_price: Annotated[float, Field(ge=0, le=1e7)]
    weight_kg: Annotated[float, Field(ge=0, le=1000)] = Field(description="per unit")
    volume_cm3: Annotated[float, Field(ge=0, le=1e7)] = Field(description="per unit")
    fragile: bool = False


class OrderIn(_In):
    order_id: OrderId
    user_id: Id
    # The confirmed offer this order answers; without one the order is never merged.
    offer_id: Annotated[str, Field(min_length=1, max_length=36)] | None = None
    address_id: Id
    area: Id  # the destination city
    node_id: Id
    zone: Zone
    carrier: Id
    distance_km: Annotated[float, Field(ge=0, le=40_000)]
    ship_date: dt.date
    promised_date: dt.date
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=200)]


class _Event(_In):
    event_id: Id
    occurred_at: Stamp


class OrderPlaced(_Event):
    type: Literal["order_placed"]
    order: OrderIn


class ItemAdded(_Event):
    type: Literal["item_added"]
    order_id: OrderId
    item: ItemIn


class AddressChanged(_Event):
    type: Literal["address_changed"]
    user_id: Id
    address_id: Id


class PaymentFailed(_Event):
    type: Literal["payment_failed"]
    order_id: OrderId


class OrderCancelled(_Event):
    type: Literal["order_cancelled"]
    order_id: OrderId


class OrderDispatched(_Event):
    type: Literal["order_dispatched"]
    order_id: OrderId


class ConsentChanged(_Event):
    type: Literal["consent_changed"]
    user_id: Id
    purpose: Literal["profiling", "contact"]
    granted: bool


EventIn = Annotated[
    OrderPlaced
    | ItemAdded
    | AddressChanged
    | PaymentFailed
    | OrderCancelled
    | OrderDispatched
    | ConsentChanged,
    Field(discriminator="type"),
]


class ExitPublic(BaseModel):
    order_id: int
    reason: str


class EventOutcome(BaseModel):
    event_id: str
    type: str
    # Orders this event took out of their merge, and why.
    exits: list[ExitPublic]
    # True when this event_id had been received before: nothing was done again.
    replayed: bool


class UserEventPublic(BaseModel):
    seq: int
    kind: str
    offer_id: str | None
    order_id: int | None
    reason: str | None
    at: dt.datetime


class AuditEntry(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    user_id: str | None
    offer_id: str | None
    order_id: int | None
    detail: dict[str, Any]


class KeyIn(_In):
    role: Literal[ROLES]  # type: ignore[valid-type]
    note: Annotated[str, Field(max_length=200)] = ""


class KeyCreated(BaseModel):
    key_id: str
    role: str
    # Shown once: only its hash is kept.
    key: str


# --- routing and the shared stock view -------------------------------------------------------


class RouteLineIn(_In):
    sku: Id
    quantity: Annotated[int, Field(ge=1, le=1000)]


class DestinationIn(_In):
    city: Annotated[str, Field(min_length=1, max_length=64)]
    # The address's coordinates when the shop has them; else the city's centre.
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


class RouteIn(_In):
    order_id: OrderId
    destination: DestinationIn
    lines: Annotated[list[RouteLineIn], Field(min_length=1, max_length=200)]
    delivery: Literal["ship", "pickup"] = "ship"
    # The store the shopper picks up from (pickup only).
    store_id: Id | None = None
    # When the order was placed; the service's clock when absent.
    ordered_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _store_with_pickup(self) -> RouteIn:
        if self.delivery == "pickup" and self.store_id is None:
            raise ValueError("delivery 'pickup' needs a store_id")
        if self.delivery == "ship" and self.store_id is not None:
            raise ValueError("store_id is for delivery 'pickup' only")
        return self


class StockRowIn(_In):
    node_id: Id
    sku: Id
    on_hand: Annotated[int, Field(ge=0, le=10**9)]


class StockCountIn(_In):
    items: Annotated[list[StockRowIn], Field(min_length=1, max_length=5000)]


class SaleIn(_In):
    node_id: Id
    lines: Annotated[list[RouteLineIn], Field(min_length=1, max_length=200)]
