"""`cadence deploy` against a real Prefect server: the schedules come from conf/flows.yaml, a
served deployment and a work pool's deployment each run `score` to completion, and without a
server the command says how to get one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from cadence.flows.deploy import DeployError, deploy_all, local_server
from cadence.flows.settings import Settings
from tests.conftest import flow_conf

pytestmark = pytest.mark.e2e

# Not the shipped crons: the deployments must follow the conf they are given.
CRON = {
    "score": "15 6 * * *",
    "train": "30 2 * * 3",
    "promote": "45 2 * * 3",
    "route": "0 4 * * 4",
}
TIMEZONE = "Europe/Paris"
NAMES = ["score/score", "train/train", "promote/promote", "route/route", "pipeline/pipeline"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A `prefect server start` of its own (SQLite in tmp), stopped after the module."""
    with local_server(tmp_path_factory.mktemp("prefect-server"), timeout=60) as url:
        yield url


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    """An empty workspace (no champion: `score` returns at once) and a conf with our crons."""
    root = tmp_path_factory.mktemp("deploy")
    conf = flow_conf(root / "conf")
    flows = yaml.safe_load((conf / "flows.yaml").read_text())
    flows["schedules"] = {**CRON, "timezone": TIMEZONE}
    (conf / "flows.yaml").write_text(yaml.safe_dump(flows))
    return Settings(home=root / "home", conf=conf)


@pytest.fixture
def api(server) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server}):
        yield server


def _env(settings: Settings, api: str) -> dict[str, str]:
    return {
        **os.environ,
        "CADENCE_HOME": str(settings.home),
        "CADENCE_CONF": str(settings.conf),
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(settings.home / "prefect"),
        # The runner looks for runs every second instead of every ten.
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def serving(settings, api, tmp_path) -> Iterator[subprocess.Popen]:
    """`cadence deploy --serve` in the background, against the test server."""
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cadence", "deploy", "--serve"],
        env=_env(settings, api),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        _stop(process)
        log.close()


def _deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def _run_messages(flow_run_id, wait: float = 15.0) -> list[str]:
    """The run's log lines; they reach the server shortly after the run ends."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            messages = [log.message for log in client.read_logs(log_filter)]
        if any("nothing scored" in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def test_without_a_server_deploy_says_how_to_start_one(settings):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(DeployError, match="PREFECT_API_URL is not set") as exc:
            deploy_all(settings, serve=False, echo=print)
    assert "prefect server start" in str(exc.value) and "--serve" in str(exc.value)
    # Nothing was started or written in the workspace.
    assert not (settings.home / "prefect").exists()

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with pytest.raises(DeployError, match="no Prefect server answers"):
            deploy_all(settings, serve=False, echo=print)
    with pytest.raises(DeployError, match="choose one"):
        deploy_all(settings, serve=True, echo=print, work_pool="cadence")


def test_a_bad_cron_in_conf_stops_deploy_before_any_server_starts(settings, tmp_path):
    conf = flow_conf(tmp_path / "conf")
    flows = yaml.safe_load((conf / "flows.yaml").read_text())
    flows["schedules"]["train"] = "0 25 * * 1"
    (conf / "flows.yaml").write_text(yaml.safe_dump(flows))
    bad = Settings(home=tmp_path / "home", conf=conf)
    with pytest.raises(DeployError, match=r"schedules: train .*0 25 \* \* 1"):
        deploy_all(bad, serve=True, echo=print)
    assert not (tmp_path / "home").exists()


def test_deployments_carry_the_conf_schedules_and_a_served_score_completes(settings, api, serving):
    from prefect.deployments import run_deployment

    lines: list[str] = []
    assert deploy_all(settings, serve=False, echo=lines.append) == NAMES
    assert any(api in line for line in lines)
    for flow, cron in CRON.items():
        deployment = _deployment(f"{flow}/{flow}")
        assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [
            (cron, TIMEZONE)
        ]
        assert deployment.work_pool_name is None and not deployment.paused
    assert _deployment("pipeline/pipeline").schedules == []

    run = run_deployment("score/score", timeout=75, poll_interval=1)
    assert run.state.is_completed(), (run.state, serving.poll())
    assert any("nothing scored" in m for m in _run_messages(run.id))


def test_a_work_pool_deployment_runs_on_its_worker_and_moves_back_to_serving(settings, api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="cadence-test", type="process"))
    assert deploy_all(settings, serve=False, echo=print, work_pool="cadence-test") == NAMES
    score = _deployment("score/score")
    assert score.work_pool_name == "cadence-test"
    assert score.job_variables["env"]["CADENCE_HOME"] == str(settings.home.resolve())
    assert [s.schedule.cron for s in score.schedules] == [CRON["score"]]

    run = run_deployment("score/score", timeout=0)
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "cadence-test"]
        + ["--run-once"],
        env=_env(settings, api),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=90,
    )
    assert worker.returncode == 0, worker.stderr.decode()[-2000:]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state.is_completed()
    assert any("nothing scored" in m for m in _run_messages(run.id))

    # Back to serving: the pool lets go of it, or its worker would still take the runs.
    deploy_all(settings, serve=False, echo=print)
    assert _deployment("score/score").work_pool_name is None


def test_the_cli_deploy_help_imports_no_prefect(tmp_path):
    code = (
        "import sys; from typer.testing import CliRunner; from cadence.cli.app import app; "
        "r = CliRunner().invoke(app, ['deploy', '--help']); "
        "assert r.exit_code == 0 and '--work-pool' in r.output, r.output; "
        "assert 'prefect' not in sys.modules"
    )
    env = {**os.environ, "CADENCE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
