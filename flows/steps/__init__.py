"""Steps: the I/O edge of each stage.

A step reads the workspace, calls the stage's pure functions, writes its result atomically (a
staged folder swapped in whole) and reports progress through a callback; it never prints. The
command line calls steps directly; the Prefect flows in `cadence.flows` wrap them as tasks.
One module per stage: `world`, `ingest`, `features`, `models`, `audits`. Import the one you
need: each brings its stage's libraries with it.
"""

from cadence.flows.steps._progress import Progress, Report, silent

__all__ = ["Progress", "Report", "silent"]
