"""Flows: the `cadence` command line and the Prefect flows that wire the stages together."""
