"""Third-party chatter goes to the workspace's log file unless `--verbose`.

Feast, MLflow, Prefect, Spark's Python side and the warnings users cannot act on are written
to `<workspace>/cadence.log`; the commands print what they did themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TextIO

CHATTY = ("feast", "mlflow", "prefect", "py4j", "alembic", "httpx", "urllib3", "distributed")

_state: dict[str, object] = {"verbose": False, "handler": None, "stderr": None}


def terminal_stderr() -> TextIO:
    """The stderr the command started with, for the command's own error messages."""
    stream = _state["stderr"]
    return stream if stream is not None else sys.stderr  # type: ignore[return-value]


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


def stderr_to_log(ctx) -> None:
    """For the rest of the command, what libraries print to stderr (MLflow's "Successfully
    registered model", progress bars, Spark's Python side) goes to the log file as well."""
    handler = _state["handler"]
    if not isinstance(handler, logging.FileHandler):
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _state["stderr"] = sys.stderr
    log = _LazyAppend(Path(handler.baseFilename))
    ctx.call_on_close(log.close)
    ctx.with_resource(contextlib.redirect_stderr(log))  # type: ignore[type-var]
    ctx.call_on_close(lambda: _state.update(stderr=None))


class _LazyAppend:
    """A text stream on the log file that opens it (and makes the workspace) on first write,
    so a command that has nothing to log leaves nothing on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO | None = None

    def write(self, text: str) -> int:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("a", encoding="utf-8")
        return self.file.write(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# Every HTTP request to the Prefect API is an INFO line; only their problems are worth keeping.
_WARNINGS_ONLY = ("httpx", "urllib3")


def _to_file(logger: logging.Logger, handler: logging.Handler) -> None:
    """Replaces the logger's terminal handlers with the file; others (Prefect's, which send the
    run logs to its server and UI) stay."""
    for h in list(logger.handlers):
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
    if handler not in logger.handlers:
        logger.addHandler(handler)
    quiet = logger.name.startswith(_WARNINGS_ONLY)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
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
