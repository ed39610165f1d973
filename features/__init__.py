"""Features: the user-behaviour feature catalogue, its engine and the Feast repo (not built yet)."""
