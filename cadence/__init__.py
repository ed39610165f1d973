"""Cadence: repurchase prediction and predictive order merging for e-commerce.

The stages are subpackages, each a folder at the top of the repository: `cadence.world` (the
simulated shop), `cadence.ingest` (raw-table contracts and importers), `cadence.features`
(the catalogue, its engine and the Feast repo), `cadence.models` (repurchase models, registry,
gates, lists), later `cadence.audits` and `cadence.serving`. `cadence.flows` holds the steps
(each stage's I/O edge) and the Prefect flows that run them; `cadence.cli` is the command line.
Layers point one way: cli -> flows -> stages.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cadence")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
