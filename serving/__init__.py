"""Serving: the merge-offer service, consent and exit rules (not built yet)."""
