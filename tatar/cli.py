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
    from tatar.threads import configure_cpu_threads

    configure_cpu_threads()
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


@data_app.command("add")
def data_add(
    files: Annotated[list[Path], typer.Argument(help="External label files (e.g. AVA.txt, or score + text JSON).")],
    name: Annotated[str, typer.Option(help="Folder under data/raw/ (use the data.train entry's name).")],
):
    """Track external training label files with `dvc import-url` under data/raw/NAME/; `tatar run` updates them."""
    from tatar.data.external import add_cli

    raise typer.Exit(add_cli(files, name))


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
    from tatar.standins.server import serve_forever

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


@bench_app.command("threads")
def bench_threads(
    settings: Annotated[list[int], typer.Option(
        "--threads", help="TATAR_CPU_THREADS values (0 = torch default).")] = [0, 1, 2],  # noqa: B006
    steps: int = 30,
):
    """SFT steps/s at torch's default threading against explicit thread counts, idle and with a competing process."""
    from tatar.training.threads_bench import run_bench

    run_bench(settings, steps=steps)


@bench_app.command("lm-head")
def bench_lm_head(
    steps: Annotated[int, typer.Option(help="Timed steps per loss path.")] = 20,
    examples: Annotated[int, typer.Option(help="Examples per batch.")] = 8,
    iaa: Annotated[int, typer.Option(help="How many of them are IAA examples with a narrative (a mixed batch).")] = 0,
) -> None:
    """One SFT step: TRL's tiled LM head, the model's own loss, the head on labelled positions (CPU default)."""
    from tatar.training.lm_head_bench import run_bench

    if not 0 <= iaa <= examples:
        raise typer.BadParameter(f"--iaa {iaa}: between 0 and --examples ({examples})")
    run_bench(steps=steps, examples=examples, iaa=iaa)


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
def overfit(
    params: ParamsOpt = Path("params.yaml"),
    shuffle_labels: Annotated[bool, typer.Option(
        help="Deliberately break the set-up (targets permuted across images): the check must then fail.")] = False,
):
    """Sanity check before a long job: memorise overfit.records corpus records per task, score the same images;
    exit 1 when a task stays below overfit.min_srcc. Run it on a GPU with the real base model first."""
    from tatar.errors import TatarError
    from tatar.threads import configure_cpu_threads
    from tatar.training.overfit import run as run_overfit

    configure_cpu_threads()
    cfg = _params(params)
    try:
        result = run_overfit(cfg, shuffle=shuffle_labels)
    except TatarError as exc:
        typer.secho(f"overfit failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(1 if result.failed(cfg.overfit.min_srcc) else 0)


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
    readout: Annotated[str | None, typer.Option(
        help="greedy (the number written) or expected (its tens digit's expectation) "
             "[default: eval.readout of ./params.yaml, as evaluation uses]")] = None,
):
    """Score images with a trained checkpoint: a table of score, think words and rationale."""
    from tatar.scorer import score_cli

    if max_new_tokens is None or readout is None:  # what evaluation uses, so scores here match its report
        from tatar.config import EvalConfig

        eval_cfg = _params(Path("params.yaml")).eval if Path("params.yaml").exists() else EvalConfig()
        max_new_tokens = eval_cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        readout = eval_cfg.readout if readout is None else readout

    raise typer.Exit(score_cli(images, task=task, checkpoint=checkpoint, output=output, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, use_vllm=use_vllm, readout=readout))


@app.command()
def lineage(
    targets: Annotated[list[str], typer.Argument(
        help="A checkpoint folder (holding lineage.json), or `diff A B` where A and B are checkpoint folders, git "
             "revisions or DVC experiment names.", metavar="CHECKPOINT | diff A B")],
    rev: Annotated[str | None, typer.Option(help="Git revision whose dvc.lock to read.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text (a tree for the terminal), md or json.")] = "text",
    width: Annotated[int | None, typer.Option(help="Fold text at this many columns (default: the terminal's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    verify: Annotated[bool, typer.Option(help="Recompute hashes; fail naming each file that differs.")] = False,
    checkpoint: Annotated[str, typer.Option(help="diff: the checkpoint compared at a revision.")] = "data/models/grpo",
):
    """Audit the chain of stages, data, params and code that produced a checkpoint, or diff two chains."""
    from tatar.lineage import LINEAGE_FILE, lineage_cli, lineage_diff_cli

    if targets[0] == "diff" and not (len(targets) == 1 and (Path("diff") / LINEAGE_FILE).is_file()):
        if len(targets) != 3:
            raise typer.BadParameter("usage: tatar lineage diff A B")
        raise typer.Exit(lineage_diff_cli(targets[1], targets[2], checkpoint, as_json or fmt == "json"))
    if len(targets) != 1:
        raise typer.BadParameter("one checkpoint folder, or `diff A B`")
    if fmt not in ("text", "md", "json"):
        raise typer.BadParameter(f"--format {fmt!r}: text, md or json")
    raise typer.Exit(lineage_cli(Path(targets[0]), rev=rev, as_json=as_json, verify=verify, fmt=fmt, width=width))

if __name__ == "__main__":
    app()
