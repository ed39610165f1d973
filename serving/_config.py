"""What the merge service decides with: offers, incentives, consent, exit rules, consolidation.

These are decisions, not code: `conf/serving.yaml` holds them, read and validated by
`flows.conf`, so business users change a threshold, an incentive or an exit limit without a
release (`POST /v1/config/reload`, or a restart, picks a changed file up).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Incentive(_Strict):
    """What every shopper of one cohort is offered: no per-person prices."""

    kind: Literal["express_upgrade", "discount"] = "express_upgrade"
    discount_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @model_validator(mode="after")
    def _rate_fits_kind(self) -> Incentive:
        if self.kind == "express_upgrade" and self.discount_rate != 0:
            raise ValueError("an express_upgrade incentive has discount_rate 0")
        if self.kind == "discount" and self.discount_rate == 0:
            raise ValueError("a discount incentive needs a discount_rate above 0")
        return self


class ContactCap(_Strict):
    """At most `offers` offers to one shopper in any `days` days."""

    offers: Positive = 2
    days: Positive = 30


class OfferRules(_Strict):
    # The model whose champion's latest list (materialised to the online store) is read.
    model: str = "repurchase"
    # An offer needs a probability of ordering within the model's horizon at least this high...
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.3
    # ...and an expected next order within this many days of today.
    horizon_days: Positive = 14
    # The suggested date: this many days before the expected next order, never before tomorrow.
    lead_days: Annotated[int, Field(ge=0)] = 3
    # An offer not answered within this many hours lapses.
    valid_hours: Positive = 48
    # A confirmed order can be cancelled for free until this hour (UTC) of its suggested date,
    # before the first dispatch wave picks it.
    cancel_until_hour: Annotated[int, Field(ge=0, le=23)] = 8
    contact_cap: ContactCap = ContactCap()
    # After an exit (a failed payment, a changed address, ...), no new offer for this long.
    exit_cooldown_days: Annotated[int, Field(ge=0)] = 30
    # The campaign names the cohort: everyone in it gets `incentive`.
    campaign: Annotated[str, Field(min_length=1, max_length=64)] = "order-early"
    incentive: Incentive = Incentive()
    # The consent text the shopper is shown and confirms; confirming an older one is refused.
    consent_version: Annotated[str, Field(min_length=1, max_length=32)] = "2026-11"


class Oversize(_Strict):
    weight_kg: Annotated[float, Field(gt=0)] = 20.0
    volume_cm3: Annotated[float, Field(gt=0)] = 60_000.0


class ExitRules(_Strict):
    """When a confirmed order leaves the merge. Each rule can be turned off."""

    # An item whose value (unit price x quantity) exceeds this; null: no limit.
    value_limit: Annotated[float, Field(gt=0)] | None = 200.0
    fragile: bool = True
    # An item over either limit; null: no oversize rule.
    oversize: Oversize | None = Oversize()
    # An item of a category the shopper ordered fewer than this many times in the last 365 days
    # (the `<category>_orders_365d` features in the online store); 0 turns the rule off. Data
    # without categories (an order log alone) has no such features, and the rule does not apply.
    usual_category_min_orders: Annotated[int, Field(ge=0)] = 1
    address_change: bool = True
    payment_failure: bool = True
    # A merged parcel whose wave would deliver after the date promised at confirmation.
    missed_promise: bool = True


class Co2Conf(_Strict):
    """kg CO2e per tonne-km by transport mode, per parcel's last-mile stop, per collection run.

    Order-of-magnitude freight factors of the kind DEFRA and the GLEC framework publish; replace
    them with the carriers' own figures."""

    van: NonNegative = 0.60
    truck: NonNegative = 0.11
    air: NonNegative = 1.13
    stop_kg: NonNegative = 0.18
    batch_kg: NonNegative = 2.0


class ConsolidationConf(_Strict):
    max_weight_kg: Annotated[float, Field(gt=0)] = 30.0
    max_volume_cm3: Annotated[float, Field(gt=0)] = 120_000.0
    # An order must come in this long before a wave's cut-off to leave with it.
    lead_minutes: Annotated[int, Field(ge=0)] = 60
    # Money per kg CO2e weighed against cost when choosing between groupings; 0: cost alone.
    co2_price: NonNegative = 0.05
    co2: Co2Conf = Co2Conf()


class ServingConf(_Strict):
    offers: OfferRules = OfferRules()
    exits: ExitRules = ExitRules()
    consolidation: ConsolidationConf = ConsolidationConf()
