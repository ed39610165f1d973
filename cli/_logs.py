"""Third-party chatter goes to the workspace's log file unless `--verbose`.

Feast, MLflow, Prefect, Spark's Python side and the warnings users cannot act on are written
to `<workspace>/cadence.log`; the commands print what they did themselves.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

CHATTY = ("feast", "mlflow", "prefect", "py4j", "alembic", "httpx", "urllib3", "distributed")

_state: dict[str, object] = {"verbose": False, "handler": None}


def route(log_file: Path, *, verbose: bool) -> None:
    """Sends the chatty loggers (and Python warnings) to `log_file`, or leaves them on the
    terminal with `verbose`. Called when a command starts."""
    _state["verbose"] = verbose
    old = _state["handler"]
    if isinstance(old, logging.Handler):  # a previous command in the same process
        for name in list(logging.root.manager.loggerDict):
            logging.getLogger(name).removeHandler(old)
        old.close()
        _state["handler"] = None
    silence_warnings()
    if verbose:
        return
    handler = _LazyFile(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    _state["handler"] = handler
    logging.captureWarnings(True)
    for name in (*CHATTY, "py.warnings"):
        _to_file(logging.getLogger(name), handler)


class _LazyFile(logging.FileHandler):
    """Opens (and makes the workspace for) the log only when something is written to it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _to_file(logger: logging.Logger, handler: logging.Handler) -> None:
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def after_heavy_imports() -> None:
    """Feast and MLflow add their own handlers and warning filters when imported; put ours back."""
    silence_warnings()
    handler = _state["handler"]
    if isinstance(handler, logging.Handler):
        for name in CHATTY:
            _to_file(logging.getLogger(name), handler)
        # Feast's own loggers are named after its modules and print in colour even when piped.
        for name in list(logging.root.manager.loggerDict):
            if name.startswith(CHATTY):
                _to_file(logging.getLogger(name), handler)


def silence_warnings() -> None:
    # Ibis 12 calls a DuckDB method that DuckDB 1.5 marks deprecated.
    warnings.filterwarnings("ignore", message="fetch_arrow_table", category=DeprecationWarning)
    # MLflow 3.17's SQL store, on connecting.
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")
