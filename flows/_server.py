"""A local Prefect server of our own: `prefect server start` on a free port of 127.0.0.1, its
SQLite database and log in the workspace, stopped when we are done with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path


class ServerError(RuntimeError):
    """The server exited or did not answer in time; the message quotes its log."""


@contextmanager
def local_server(prefect_home: Path, *, timeout: float = 90.0) -> Iterator[str]:
    """A `prefect server start` on a free port of 127.0.0.1, its SQLite database and its log
    (`server.log`) in `prefect_home`; yields the API URL and stops the server on exit."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = prefect_home / "server.log"
    with ExitStack() as stack:
        log = stack.enter_context(log_path.open("ab"))
        stack.enter_context(_sigterm_exits())
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl+C reaches this process only, which stops serving (pausing
            # the schedules through the server) before it stops the server.
            start_new_session=True,
        )
        stack.callback(_stop, server)
        _wait_healthy(url, server, timeout, log_path)
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServerError(
                f"the Prefect server exited with code {server.returncode}; its log, {log}, "
                f"ends with:\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise ServerError(f"the Prefect server did not answer within {timeout:.0f} s; see {log}")


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM while the server starts unwinds like Ctrl+C, so the server is stopped too.
    (While serving, Prefect's runner takes SIGTERM and returns.)"""
    if sys.platform == "win32" or not _main_thread():
        yield
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
