"""The TATAR pipeline as a Prefect flow over the DVC DAG.

DVC owns the DAG and decides, per stage, whether anything changed (deps, params, outs hashes in dvc.lock);
Prefect owns execution: one task per stage in topological order, retries, logs, and artifacts (a run table,
each stage's metrics, the lineage of the final checkpoint). ``dvc repro`` runs the same stages without Prefect.

    tatar run                 # whole pipeline, one Prefect API for the run (PREFECT_API_URL or a local server)
    python -m flows.pipeline  # the same
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

# Stages that talk to remote endpoints may hit transient failures worth a retry; training stages resume from
# their own checkpoints, so one retry there is also cheap. Everything else fails fast, and so does any failure
# a retry cannot fix (a usage, configuration, data or policy error: see tatar.errors.may_pass_on_retry).
LAST_RUN = ".tatar/last_run.json"
RETRIES = {"rationales": 2, "validate": 1, "sft": 1, "grpo": 1}


@dataclass
class StageResult:
    stage: str
    status: str  # "ran" | "skipped"
    seconds: float
    outputs: str  # short content hashes of the stage's outs, from dvc.lock


def stage_order(root: str | Path = ".") -> list[str]:
    """dvc.yaml stage names in topological order (DVC's own graph, so there is one DAG definition)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = list(reversed(list(nx.topological_sort(graph))))
        return [s.name for s in order if getattr(s, "cmd", None) and s.path_in_repo.endswith("dvc.yaml")]


def _lock_outputs(stage: str, root: Path) -> str:
    import yaml

    lock_file = root / "dvc.lock"
    if not lock_file.exists():
        return ""
    lock = yaml.safe_load(lock_file.read_text()) or {}
    outs = (lock.get("stages", {}).get(stage) or {}).get("outs", [])
    return " ".join(f"{Path(o['path']).name}:{o.get('md5', '')[:8]}" for o in outs)


@task(name="dvc-stage", task_run_name="{stage}")
def reproduce_stage(stage: str, force: bool = False, root: str = ".") -> StageResult:
    """Ask DVC to reproduce this one stage; DVC runs it only if its deps, params or outs changed."""
    from dvc.repo import Repo

    logger = get_run_logger()
    start = time.perf_counter()
    with Repo(root) as repo:
        ran = repo.reproduce(targets=[stage], single_item=True, force=force)
    result = StageResult(stage, "ran" if ran else "skipped", round(time.perf_counter() - start, 1),
                         _lock_outputs(stage, Path(root)))
    logger.info("%s: %s in %.1fs", stage, result.status, result.seconds)
    return result


def _metrics_files(root: Path) -> dict[str, list[Path]]:
    import yaml

    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    out = {}
    for name, spec in dvc_yaml.get("stages", {}).items():
        files = [next(iter(m)) if isinstance(m, dict) else m for m in spec.get("metrics", [])]
        out[name] = [root / f for f in files if (root / f).exists()]
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def publish_artifacts(results: list[StageResult], root: Path) -> None:
    create_table_artifact(key="tatar-run-table", table=[asdict(r) for r in results],
                          description="Stages of this run: ran or skipped (DVC decided), seconds, output hashes.")
    for stage, files in _metrics_files(root).items():
        for f in files:
            rows = _flatten(json.loads(f.read_text()))
            md = f"### {stage} metrics (`{f.relative_to(root)}`)\n\n| metric | value |\n|---|---|\n"
            md += "\n".join(f"| {k} | {v} |" for k, v in rows.items())
            create_markdown_artifact(key=f"tatar-{stage}-metrics".replace("_", "-"), markdown=md)
    report = root / "data/eval/report.md"
    if report.exists():
        create_markdown_artifact(key="tatar-eval-report", markdown=report.read_text())
    try:
        from tatar.lineage import final_checkpoint, lineage_markdown
    except ImportError:
        return
    ckpt = final_checkpoint(root)
    if ckpt is not None:
        create_markdown_artifact(key="tatar-lineage", markdown=lineage_markdown(ckpt, root=root, check_disk=False))


def retry_only_transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry a failed stage only when a retry can help."""
    from tatar.errors import may_pass_on_retry

    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the failure being classified
        return may_pass_on_retry(exc)
    return False


def check_until(until: str | None, stages: list[str]) -> None:
    if until is not None and until not in stages:
        from tatar.errors import UnknownNameError

        raise UnknownNameError(f"--until {until!r}: no such stage; the stages are {', '.join(stages)}")


@flow(name="tatar-pipeline", log_prints=True)
def pipeline(force: bool = False, until: str | None = None, root: str = ".") -> list[StageResult]:
    from tatar.data.external import update_external

    changed = update_external(Path(root))  # external label files (tatar data add): a changed source re-runs prepare
    if changed:
        print(f"external sources changed: {', '.join(changed)}")
    results = []
    stages = stage_order(root)
    check_until(until, stages)
    for stage in stages:
        results.append(reproduce_stage.with_options(retries=RETRIES.get(stage, 0), retry_delay_seconds=5,
                                                    retry_condition_fn=retry_only_transient)(
            stage, force=force, root=root))
        if stage == until:
            break
    publish_artifacts(results, Path(root))
    return results


# ------------------------------------------------------------------------------------------- runner
def prepare_environment(root: Path) -> None:
    """Defaults that let `tatar run` work on a machine with no prior Prefect or DVC set-up."""
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # dvc.yaml calls `tatar stage ...`: make it this interpreter's tatar even when the venv is not activated.
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


@contextmanager
def prefect_api():
    """One Prefect API for the whole run: PREFECT_API_URL when set, else a local server for the duration."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    # Explicit: a busy 2-core machine needs more than Prefect's 20 s default to start the server.
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
    try:
        os.environ["PREFECT_API_URL"] = server.api_url  # stage subprocesses share it
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_prefect_workers()  # send queued logs/events while the server is still up, not at interpreter exit
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
        atexit.unregister(server.stop)  # stopped already; at exit its log line would hit closed streams


def _drain_prefect_workers() -> None:
    """Flush Prefect's background log and event senders. Left for exit, they retry against the stopped server
    for over a minute before the process can end."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def print_run_table(results: list[StageResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tatar run")
    for col in ("stage", "status", "seconds", "outputs"):
        table.add_column(col)
    for r in results:
        table.add_row(r.stage, f"[green]{r.status}" if r.status == "ran" else r.status, f"{r.seconds:.1f}", r.outputs)
    Console().print(table)


def run_pipeline_cli(force: bool = False, until: str | None = None, root: str | Path = ".") -> int:
    root = Path(root).resolve()
    if not (root / "dvc.yaml").exists():
        print(f"{root}: no dvc.yaml here; run `tatar run` from the project root")
        return 2
    prepare_environment(root)
    check_until(until, stage_order(root))  # before a Prefect server is started for nothing
    with prefect_api() as url:
        print(f"Prefect API: {url}")
        state = pipeline(force=force, until=until, root=str(root), return_state=True)
    if state.is_failed():
        print(f"pipeline failed: {state.message}")
        return 1
    results = state.result()
    print_run_table(results)
    # The same table as the Prefect artifact, for scripts and tests that do not query the Prefect API.
    from tatar.records import write_json

    write_json(root / LAST_RUN, [asdict(r) for r in results])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_pipeline_cli())
