"""The `fairness_audit` promotion gate: a challenger whose audit fails cannot be champion.

The gate reads the audit the promote step attached to the candidate (`Candidate.audit`); a
candidate without one fails, so the gate cannot pass by being skipped.
"""

from __future__ import annotations

from cadence.audits._fairness import FAIL
from cadence.models._gates import Candidate, GateResult, register_gate

GATE = "fairness_audit"


@register_gate(GATE)
def fairness_audit(c: Candidate) -> GateResult:
    audit = c.audit
    if audit is None:
        return GateResult(GATE, False, "no fairness audit of this version was run")
    failing = [
        f"{x['grouping']} {x['check']}" for x in audit.get("not_passing", []) if x["status"] == FAIL
    ]
    where = f"; report {audit['report']}" if audit.get("report") else ""
    if audit["verdict"] == FAIL:
        return GateResult(GATE, False, f"FAIL: {', '.join(failing)}{where}")
    notes = []
    warned = [x for x in audit.get("not_passing", []) if x["check"] != "missing"]
    missing = [x["grouping"] for x in audit.get("not_passing", []) if x["check"] == "missing"]
    if warned:
        notes.append(f"{len(warned)} check(s) warn")
    if missing:
        notes.append(f"not audited: {', '.join(missing)}")
    detail = audit["verdict"] + (f" ({'; '.join(notes)})" if notes else "") + where
    return GateResult(GATE, True, detail)
