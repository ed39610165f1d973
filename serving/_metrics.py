"""Prometheus metrics, in a registry of the app's own (two apps in one process, as in tests,
never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "cadence_request_seconds",
            "Time to answer a request, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.offers = Counter(
            "cadence_offers_total",
            "Offer requests by outcome (offer, or the reason for none)",
            ["outcome"],
            registry=self.registry,
        )
        self.confirmations = Counter(
            "cadence_confirmations_total",
            "Confirmations made (replays not counted)",
            registry=self.registry,
        )
        # Known outcomes start at 0, so a rate over them exists from the first scrape.
        self.offers.labels("offer")
        self.exits = Counter(
            "cadence_merge_exits_total",
            "Orders taken out of a merge, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.routes = Counter(
            "cadence_routes_total",
            "Single orders routed, by delivery and outcome (routed, or the refusal's code)",
            ["delivery", "outcome"],
            registry=self.registry,
        )
        for delivery in ("ship", "pickup"):
            for outcome in ("routed", "unservable", "stock_changed"):
                self.routes.labels(delivery, outcome)
