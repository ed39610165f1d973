"""`cadence deploy`: the flows as deployments on a Prefect server, so its scheduler runs them.

Prefect's temporary server cannot schedule, so deployments need a real one: PREFECT_API_URL,
or, with `serve`, a `prefect server start` of our own whose database and log stay in the
workspace (`<home>/prefect`). `score` runs daily, `train` and `promote` weekly, and `route`
(routing retrained, gated and replayed) weekly too (cron in conf/flows.yaml); `pipeline` has
no schedule and runs on demand.

Something must execute the runs. With a work pool, a worker does (`prefect worker start
--pool NAME`): the deployments import the flows from the installed package and carry the
workspace's paths. Without one, the runs wait for `cadence deploy --serve`, which serves them
from its own process until interrupted.

Prefect is imported inside the functions: `cadence deploy --help` stays quick.
"""

from __future__ import annotations

import os
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
SCHEDULED = ("score", "train", "promote", "route")
ON_DEMAND = ("pipeline",)
TAGS = ["cadence"]


class DeployError(ValueError):
    """No server to deploy to, a missing work pool, or a local server that would not start."""


@contextmanager
def local_server(prefect_home: Path, *, timeout: float = 90.0) -> Iterator[str]:
    """A `prefect server start` of our own (`flows._server`), yielding its API URL;
    DeployError if it does not come up."""
    from cadence.flows._server import ServerError
    from cadence.flows._server import local_server as start

    try:
        with start(prefect_home, timeout=timeout) as url:
            yield url
    except ServerError as exc:
        raise DeployError(str(exc)) from exc


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
