"""Audits: is a model's targeting fair to the groups it touches?

An audit compares groups of shoppers (sensitive attributes, the place attributes that can
stand in for them, and their intersections) on the decision a model makes: who gets an
offer. Every per-group figure comes from Fairlearn's `MetricFrame`; each gap between groups
gets a customer-bootstrap interval, and each check is PASS, WARN (the interval straddles the
limit) or FAIL. Proxy risk shows how much of a sensitive attribute the model's inputs carry;
a Fairlearn `ThresholdOptimizer` variant is shown beside the model with what it costs. The
`fairness_audit` promotion gate (registered on import) refuses a challenger whose audit
fails.
"""

from cadence.audits._audit import AuditSettings, Scored, audit
from cadence.audits._fairness import FAIL, PASS, WARN, Limits
from cadence.audits._gate import GATE
from cadence.audits._groups import Groupings, groupings
from cadence.audits._mitigate import decisions, offer_probability
from cadence.audits._proxy import proxy_risk
from cadence.audits._report import model_card, render_html

__all__ = [
    "FAIL",
    "GATE",
    "PASS",
    "WARN",
    "AuditSettings",
    "Groupings",
    "Limits",
    "Scored",
    "audit",
    "decisions",
    "groupings",
    "model_card",
    "offer_probability",
    "proxy_risk",
    "render_html",
]
