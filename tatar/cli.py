"""The ``tatar`` command line: a thin layer over the library (every command imports its module lazily,
so ``tatar --help`` stays instant)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer


class _App(typer.Typer):
    """The top-level handler: an expected failure (tatar.errors) is one red line and its exit status (2 usage or
    configuration, 1 data or policy, 75 transient); ``--debug`` or TATAR_DEBUG=1 keeps the traceback."""

    def __call__(self, *args, **kwargs):
        from tatar.errors import debug_enabled, user_facing

        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            found = None if debug_enabled() else user_facing(exc)
            if found is None:
                raise
            typer.secho(f"error: {found[0]}", fg="red", err=True)
            sys.exit(found[1])


app = _App(help="TATAR: task-aware IQA/IAA scorer - data, teacher, training, evaluation, lineage.",
           no_args_is_help=True, pretty_exceptions_show_locals=False)
data_app = typer.Typer(help="Datasets: the benchmark registry and importers.", no_args_is_help=True)
teacher_app = typer.Typer(help="The local OpenAI-compatible reference teacher.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(teacher_app, name="teacher")
app.add_typer(bench_app, name="bench")

# Stage name (as in dvc.yaml) -> "module:function"; each function takes the loaded Params.
STAGES = {
    "prepare": "tatar.data.prepare:run",
    "rationales": "tatar.teacher.stage:run",
    "validate": "tatar.validation:run",
    "base_model": "tatar.modeling:run",
    "sft": "tatar.training.sft:run",
    "grpo": "tatar.training.grpo:run",
    "evaluate": "tatar.evaluation:run",
}


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of expected failures "
                                                                 "(same as TATAR_DEBUG=1).")] = False):
    if debug:  # in the environment, so the stage commands DVC starts inherit it
        from tatar.errors import DEBUG_ENV

        os.environ[DEBUG_ENV] = "1"


ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to load.")]


def _call(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _params(path: Path):
    from tatar.config import ConfigError, load_params

    try:
        return load_params(path)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STAGES)}.")],
    params: ParamsOpt = Path("params.yaml"),
):
    """Run one pipeline stage's body (what `dvc repro` calls). Run from the project root."""
    if name not in STAGES:
        typer.secho(f"unknown stage {name!r}; choose from {', '.join(STAGES)}", fg="red", err=True)
        raise typer.Exit(2)
    from tatar.errors import TatarError, debug_enabled

    try:
        _call(STAGES[name])(_params(params))
    except TatarError as exc:  # an expected failure: its message names what is wrong; no traceback
        if debug_enabled():
            raise
        typer.secho(f"stage {name} failed: {exc}", fg="red", err=True)
        raise typer.Exit(exc.exit_code) from None


@app.command()
def run(
    force: Annotated[bool, typer.Option(help="Re-run every stage even if DVC finds it up to date.")] = False,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
):
    """Run the whole pipeline through Prefect, DVC deciding per stage whether to run or skip."""
    from flows.pipeline import run_pipeline_cli

    raise typer.Exit(run_pipeline_cli(force=force, until=until))


@app.command()
def serve(
    name: Annotated[str, typer.Option(help="Deployment name.")] = "tatar-pipeline",
):
    """Serve the pipeline as a Prefect deployment that re-runs on `tatar.data.changed` events."""
    from flows.deployment import serve_pipeline

    serve_pipeline(name=name)


@data_app.command("list")
def data_list():
    """List the benchmark registry: task, declared label scale, manifest size."""
    from tatar.data.registry import print_registry

    print_registry()


@data_app.command("import")
def data_import(
    name: Annotated[str, typer.Argument(help="Benchmark name (see `tatar data list`).")],
    images: Annotated[Path, typer.Option(help="Folder holding the benchmark's images.")],
    out: Annotated[Path | None, typer.Option(help="Manifest to write.")] = None,
    allow_missing: Annotated[bool, typer.Option(help="Write the manifest even if images are missing.")] = False,
):
    """Check a benchmark's image folder against its evaluation manifest and write a test manifest."""
    from tatar.data.importers import import_benchmark_cli

    raise typer.Exit(import_benchmark_cli(name, images, out=out, allow_missing=allow_missing))


@teacher_app.command("serve")
def teacher_serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 429/500.")] = 0.0,
    timeout_rate: Annotated[float, typer.Option(help="Share of requests that hang past the client timeout.")] = 0.0,
    malformed_rate: Annotated[float, typer.Option(help="Share of answers with broken tags/contents.")] = 0.0,
    seed: int = 0,
):
    """Run the reference teacher as an OpenAI-compatible server (chat completions, models, health)."""
    from tatar.teacher.server import serve_forever

    serve_forever(host=host, port=port, latency_ms=latency_ms, error_rate=error_rate,
                  timeout_rate=timeout_rate, malformed_rate=malformed_rate, seed=seed)


@bench_app.command("teacher")
def bench_teacher(
    latency_ms: Annotated[float, typer.Option(help="Server latency per request.")] = 100.0,
    requests: Annotated[int, typer.Option(help="Requests per concurrency level.")] = 256,
    concurrency: Annotated[int, typer.Option(help="The concurrent level compared with 1.")] = 64,
):
    """Teacher throughput of the real client path at concurrency 1 and N; last line `ratio: N.Nx`."""
    from tatar.teacher.bench import run_bench

    run_bench(latency_ms=latency_ms, requests=requests, concurrency=concurrency)


@bench_app.command("rewards")
def bench_rewards(
    images: int = 64,
    generations: int = 8,
    repeats: int = 5,
):
    """Vectorised Thurstone ranking reward against a pure-Python pairwise loop; prints both and the ratio."""
    from tatar.rewards import run_bench

    run_bench(images=images, generations=generations, repeats=repeats)


@app.command()
def score(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    task: Annotated[str, typer.Option(help="iqa or iaa.")] = "iqa",
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint to score with.")] = Path("data/models/grpo"),
    output: Annotated[Path | None, typer.Option(help="Write results to .json or .csv.")] = None,
    batch_size: int = 8,
    max_new_tokens: Annotated[int | None, typer.Option(
        help="Generation budget per image [default: eval.max_new_tokens of ./params.yaml, as evaluation uses]")] = None,
    use_vllm: Annotated[bool, typer.Option(help="Generate with vLLM (optional extra, GPUs).")] = False,
):
    """Score images with a trained checkpoint: a table of score, think words and rationale."""
    from tatar.scorer import score_cli

    if max_new_tokens is None:  # the budget evaluation uses, so a long IAA narrative is not cut off here alone
        from tatar.config import EvalConfig

        eval_cfg = _params(Path("params.yaml")).eval if Path("params.yaml").exists() else EvalConfig()
        max_new_tokens = eval_cfg.max_new_tokens

    raise typer.Exit(score_cli(images, task=task, checkpoint=checkpoint, output=output, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, use_vllm=use_vllm))


@app.command()
def lineage(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (holding lineage.json).")],
    rev: Annotated[str | None, typer.Option(help="Git revision whose dvc.lock to read.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verify: Annotated[bool, typer.Option(help="Recompute hashes; fail naming each file that differs.")] = False,
):
    """Audit the chain of stages, data, params and code that produced a checkpoint."""
    from tatar.lineage import lineage_cli

    raise typer.Exit(lineage_cli(checkpoint, rev=rev, as_json=as_json, verify=verify))


if __name__ == "__main__":
    app()
