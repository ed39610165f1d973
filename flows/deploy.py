"""`cadence deploy`: the flows as deployments on a Prefect server, so its scheduler runs them.

Prefect's temporary server cannot schedule, so deployments need a real one: PREFECT_API_URL,
or, with `serve`, a `prefect server start` of our own whose database and log stay in the
workspace (`<home>/prefect`). `score` runs daily, `train` and `promote` weekly (cron in
conf/flows.yaml); `pipeline` has no schedule and runs on demand.

Something must execute the runs. With a work pool, a worker does (`prefect worker start
--pool NAME`): the deployments import the flows from the installed package and carry the
workspace's paths. Without one, the runs wait for `cadence deploy --serve`, which serves them
from its own process until interrupted.

Prefect is imported inside the functions: `cadence deploy --help` stays quick.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Schedule

    from cadence.flows.conf import SchedulesConf
    from cadence.flows.settings import Settings

# The deployments, in the order they are listed, each named after its flow: "score/score".
SCHEDULED = ("score", "train", "promote")
ON_DEMAND = ("pipeline",)
TAGS = ["cadence"]


class DeployError(ValueError):
    """No server to deploy to, a missing work pool, or a local server that would not start."""


def deploy_all(
    settings: Settings,
    *,
    serve: bool,
    echo: Callable[[str], None],
    work_pool: str | None = None,
) -> list[str]:
    """Register the deployments on the server at PREFECT_API_URL and return their names.

    `work_pool`: deploy them to that pool, for its worker to run. `serve`: start a local server
    when PREFECT_API_URL is unset, then serve the deployments from this process until
    interrupted (SIGINT or SIGTERM); the server, if started here, stops with it.
    """
    if serve and work_pool:
        raise DeployError(
            "--serve runs the deployments in this process, --work-pool leaves them to a worker: "
            "choose one"
        )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # A bad cron stops the command before any server starts.
    schedules = settings.decisions().flows.schedules
    crons = {name: _cron(schedules, name) for name in SCHEDULED}
    url = PREFECT_API_URL.value()
    if not url and not serve:
        raise DeployError(
            "PREFECT_API_URL is not set: schedules need a Prefect server. Start one with "
            "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
            "or run `cadence deploy --serve`, which starts one in the workspace"
        )
    with ExitStack() as stack:
        if not url:
            echo(f"starting a Prefect server (database and log in {_prefect_home(settings)})")
            url = stack.enter_context(local_server(_prefect_home(settings)))
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
            # Flow runs started by `serve` are subprocesses; they read the environment.
            stack.enter_context(_environ("PREFECT_API_URL", url))
            echo(f"Prefect server: {url}, UI {_ui_url(url)}; it stops with this command")
        else:
            _check_server(url)
            echo(f"Prefect server: {url}, UI {_ui_url(url)}")
        deployments = _deployments(settings, crons, work_pool, echo)
        _drop_moved(deployments, work_pool)
        for d in deployments:
            echo(f"  {d.flow_name}/{d.name}: {_describe(d)}")
        names = [f"{d.flow_name}/{d.name}" for d in deployments]
        if serve:
            from prefect import serve as prefect_serve

            echo(f"serving {len(deployments)} deployments from this process; Ctrl+C stops")
            prefect_serve(*deployments, print_starting_message=False)
            echo("stopped serving; the schedules are paused until served again")
            return names
        for d in deployments:
            d.apply(work_pool_name=work_pool)
        if work_pool:
            echo(f"registered; a worker runs them: prefect worker start --pool {work_pool}")
        else:
            echo(
                "registered; they run while `cadence deploy --serve` serves them "
                "(or deploy to a work pool: cadence deploy --work-pool NAME)"
            )
        return names


# --- the deployments ---------------------------------------------------------------------------


def _deployments(
    settings: Settings,
    crons: dict[str, Schedule],
    work_pool: str | None,
    echo: Callable[[str], None],
) -> list[RunnerDeployment]:
    """Served: the flows as this process imported them. In a pool: the same flows by module
    path (`cadence.flows.pipeline.score`), run from the package's folder with the workspace's
    paths in the environment, so a worker started anywhere runs them on this workspace."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment
    from prefect.runner.storage import LocalStorage

    from cadence.flows import pipeline

    if work_pool:
        _check_pool(work_pool)
        # The folder `cadence` imports from: the repository (editable) or site-packages.
        source = LocalStorage(str(Path(pipeline.__file__).resolve().parents[1]))
        job_variables = {"env": _job_env(settings, echo)}
    out = []
    for name in SCHEDULED + ON_DEMAND:
        flow = pipeline.FLOWS[name]
        options: dict[str, Any] = {
            "name": name,
            "schedules": [crons[name]] if name in crons else [],
            "tags": TAGS,
            # A slow train must not overlap the next one over the same workspace.
            "concurrency_limit": 1,
        }
        if work_pool:
            d = RunnerDeployment.from_storage(
                storage=source,
                entrypoint=f"{pipeline.__name__}.{flow.fn.__name__}",
                work_pool_name=work_pool,
                job_variables=job_variables,
                **options,
            )
        else:
            d = flow.to_deployment(entrypoint_type=EntrypointType.MODULE_PATH, **options)
        out.append(d)
    return out


def _cron(schedules: SchedulesConf, name: str) -> Schedule:
    """The conf's cron and timezone, checked now rather than halfway through registering."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.schedules import Cron
    from pydantic import ValidationError

    cron = getattr(schedules, name)
    try:
        CronSchedule(cron=cron, timezone=schedules.timezone)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise DeployError(f"conf flows.yaml, schedules: {name} or timezone: {problems}") from None
    return Cron(cron, timezone=schedules.timezone)


def _job_env(settings: Settings, echo: Callable[[str], None]) -> dict[str, str]:
    """The workspace for runs in a pool. Endpoints holding credentials are left to the worker's
    environment: a deployment's variables are readable by anyone with the server's UI."""
    env = {
        "CADENCE_HOME": str(settings.home.resolve()),
        "CADENCE_CONF": str(settings.conf.resolve()),
        "PREFECT_LOCAL_STORAGE_PATH": str(_prefect_home(settings) / "storage"),
    }
    endpoints = {
        "CADENCE_ONLINE_STORE": settings.online_store,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    for key, value in endpoints.items():
        if value is None:
            continue
        if "@" in urlsplit(value).netloc:
            echo(f"{key} holds credentials: not stored with the deployments; set it for the worker")
        else:
            env[key] = value
    return env


def _describe(d: RunnerDeployment) -> str:
    if not d.schedules:
        return f"on demand (prefect deployment run {d.flow_name}/{d.name})"
    s = d.schedules[0].schedule
    return f"cron '{s.cron}' ({s.timezone})"


def _drop_moved(deployments: list[RunnerDeployment], work_pool: str | None) -> None:
    """A deployment moving between a pool and serving is deleted first: an update would keep
    its old pool, and that pool's worker would still take its runs."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for d in deployments:
            try:
                old = client.read_deployment_by_name(f"{d.flow_name}/{d.name}")
            except ObjectNotFound:
                continue
            if old.work_pool_name != work_pool:
                client.delete_deployment(old.id)


# --- the server ----------------------------------------------------------------------------------


def _check_server(url: str) -> None:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
    except Exception as exc:
        problem = exc
    if problem is not None:
        raise DeployError(
            f"no Prefect server answers at PREFECT_API_URL={url} ({problem}). Start it with "
            "`prefect server start`, or unset PREFECT_API_URL and run `cadence deploy --serve`"
        )


def _check_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            raise DeployError(
                f"no work pool '{name}' on the server: create it with "
                f"`prefect work-pool create {name} --type process`"
            ) from None


def _prefect_home(settings: Settings) -> Path:
    return (settings.home / "prefect").resolve()


def _ui_url(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


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
            raise DeployError(
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
    raise DeployError(f"the Prefect server did not answer within {timeout:.0f} s; see {log}")


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


@contextmanager
def _environ(key: str, value: str) -> Iterator[None]:
    previous = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous
