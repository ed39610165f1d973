"""Audits: Fairlearn metrics, verdicts and the promotion gate (not built yet)."""
