"""Models: repurchase and routing models, evaluation, registry and gates (not built yet)."""
