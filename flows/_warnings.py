"""Warnings users cannot act on, silenced for the command line."""

from __future__ import annotations

import logging
import warnings


def quiet() -> None:
    """Applied at start-up and again after importing Feast, which puts its own filters first."""
    # Ibis 12 calls a DuckDB method that DuckDB 1.5 marks deprecated.
    warnings.filterwarnings("ignore", message="fetch_arrow_table", category=DeprecationWarning)
    # MLflow 3.17's SQL store, on connecting (Feast's filters would show it).
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")
    # MLflow narrates each step at INFO and warns that a Python model is pickled (that is how
    # the model is stored); the commands print what they did themselves.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
