"""The Prefect flow over a DVC DAG, on a toy two-stage project (fast; the real DAG is tested end to end)."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows import pipeline as pl

DVC_YAML = """
stages:
  second:
    cmd: python -c "import pathlib; pathlib.Path('b.txt').write_text(pathlib.Path('a.txt').read_text() + 'b')"
    deps: [a.txt]
    outs: [b.txt]
  first:
    cmd: python -c "import yaml, pathlib; pathlib.Path('a.txt').write_text(str(yaml.safe_load(open('params.yaml'))['first']['x']))"
    params: [first]
    outs: [a.txt]
"""


@pytest.fixture
def toy_project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("first: {x: 1}\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    return tmp_path


def test_stage_order_follows_the_dag_not_the_file(toy_project):
    assert pl.stage_order(toy_project) == ["first", "second"]


@pytest.mark.slow
def test_run_twice_skips_then_reruns_only_affected(toy_project, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    pl.prepare_environment(toy_project)
    with pl.prefect_api():
        first = pl.pipeline(root=str(toy_project))
        second = pl.pipeline(root=str(toy_project))
        (toy_project / "params.yaml").write_text("first: {x: 2}\n")
        third = pl.pipeline(root=str(toy_project))
        artifacts = asyncio.run(_read_artifact("tatar-run-table"))
    assert [r.status for r in first] == ["ran", "ran"]
    assert [r.status for r in second] == ["skipped", "skipped"]
    assert [r.status for r in third] == ["ran", "ran"]
    assert (toy_project / "b.txt").read_text() == "2b"
    assert first[1].outputs.startswith("b.txt:")
    assert artifacts and "skipped" in str(artifacts)


async def _read_artifact(key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        arts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return [a.data for a in arts]


def test_no_dvc_yaml_is_a_clear_error(tmp_path, capsys):
    assert pl.run_pipeline_cli(root=tmp_path) == 2
    assert "no dvc.yaml" in capsys.readouterr().out


@pytest.mark.slow
def test_served_deployment_reruns_on_data_changed_event(toy_project, monkeypatch):
    """`tatar serve` against a real local Prefect server; `tatar.data.changed` triggers a pipeline run."""
    from tatar.events import emit_data_changed

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    pl.prepare_environment(toy_project)
    log = toy_project / "serve.log"  # a file, not a pipe: an unread pipe would block the server when full
    with pl.prefect_api() as url, log.open("w") as log_fh:
        served = subprocess.Popen([sys.executable, "-m", "tatar.cli", "serve"], cwd=toy_project,
                                  env={**os.environ, "PREFECT_API_URL": url}, stdout=log_fh, stderr=subprocess.STDOUT)
        try:
            assert asyncio.run(_wait(_deployment_id, 120)), "deployment never appeared"
            # The trigger's automation reaches the server's trigger service a moment after the deployment
            # appears; an event before that is (correctly) ignored, so emit until a run is created.
            for _ in range(12):
                assert emit_data_changed("toy", toy_project / "a.txt")
                if asyncio.run(_wait(_any_deployment_run, 15)):
                    break
            state = asyncio.run(_wait(_completed_run_state, 240))
        finally:
            served.terminate()
            served.wait(timeout=30)
    assert state == "COMPLETED", log.read_text()[-3000:]
    assert (toy_project / "b.txt").read_text() == "1b"


async def _wait(probe, timeout):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := await probe():
            return found
        await asyncio.sleep(1)
    return None


async def _deployment_id():
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        try:
            return (await client.read_deployment_by_name("tatar-pipeline/tatar-pipeline")).id
        except Exception:
            return None


async def _any_deployment_run():
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return any(r.deployment_id for r in await client.read_flow_runs())


async def _completed_run_state():
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
    finals = [r.state.type.value for r in runs if r.deployment_id and r.state and r.state.is_final()]
    return finals[0] if finals else None


@pytest.mark.parametrize("status, retry", [(2, False), (1, False), (75, True)])
def test_real_dvc_stage_failures_are_classified_for_retry(toy_project, status, retry):
    """What Prefect's retry condition sees from DVC when a stage command exits with a usage (2), data/policy (1) or
    transient (75) status: only the transient one is retried."""
    from dvc.repo import Repo

    from tatar.errors import may_pass_on_retry, stage_exit_status

    (toy_project / "dvc.yaml").write_text(f'stages:\n  fails:\n    cmd: python -c "import sys; sys.exit({status})"\n')
    with Repo(str(toy_project)) as repo, pytest.raises(Exception) as failure:
        repo.reproduce(targets=["fails"], single_item=True)
    assert stage_exit_status(failure.value) == status
    assert may_pass_on_retry(failure.value) is retry
