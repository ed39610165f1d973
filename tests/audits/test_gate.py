"""The fairness_audit gate on audits built here: FAIL refuses, WARN and PASS pass, and a
candidate without an audit is refused rather than waved through."""

from __future__ import annotations

import pytest

from cadence.audits import GATE
from cadence.models._gates import Candidate, run_gates

pytestmark = pytest.mark.unit


def _candidate(audit):
    return Candidate(
        name="repurchase",
        version="2",
        metrics={},
        champion_version="1",
        champion_metrics=None,
        test_window="w",
        conf={},
        audit=audit,
    )


def _check(grouping, check, status):
    return {"grouping": grouping, "check": check, "status": status}


def test_a_failing_audit_is_refused_and_names_its_checks():
    audit = {
        "verdict": "FAIL",
        "not_passing": [
            _check("gender", "equalized_odds", "FAIL"),
            _check("age_band", "demographic_parity", "WARN"),
        ],
        "report": "/r/audit.html",
    }
    [r] = run_gates(_candidate(audit), [GATE])
    assert not r.passed and r.detail == "FAIL: gender equalized_odds; report /r/audit.html"


def test_warn_passes_and_says_what_warned_or_was_not_audited():
    audit = {
        "verdict": "WARN",
        "not_passing": [
            _check("age_band", "calibration", "WARN"),
            _check("gender", "missing", "WARN"),
        ],
    }
    [r] = run_gates(_candidate(audit), [GATE])
    assert r.passed and r.detail == "WARN (1 check(s) warn; not audited: gender)"
    [r] = run_gates(_candidate({"verdict": "PASS", "not_passing": []}), [GATE])
    assert r.passed and r.detail == "PASS"


def test_no_audit_is_no_pass():
    [r] = run_gates(_candidate(None), [GATE])
    assert not r.passed and "no fairness audit" in r.detail
