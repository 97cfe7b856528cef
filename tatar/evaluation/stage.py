"""Stage ``evaluate``: score a checkpoint on the test manifests named in ``eval.benchmarks``.

Reads ``data/manifests/test/<name>.jsonl`` for each benchmark and writes, under ``data/eval/``:
``predictions/<name>.jsonl`` (every image, with the raw text; parse failures kept), ``metrics.json``,
``report.md``, ``plots/*.png``, ``scatter.csv`` and ``think_words.csv``.

The checkpoint is ``eval.checkpoint``; ``TATAR_EVAL_CHECKPOINT`` or the ``checkpoint`` argument override it
for a one-off run (``dvc exp run -S eval.checkpoint=data/models/sft`` is the tracked way).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from tatar.atomic_write import write_text
from tatar.config import EvalConfig, Params
from tatar.evaluation.compare import previous_metrics
from tatar.evaluation.distortions import by_distortion
from tatar.evaluation.metrics import EvalMetrics, Prediction, summarise
from tatar.evaluation.report import distortion_tables, metrics_table, spread_notes, write_report
from tatar.records import ManifestRecord, read_records, write_json, write_jsonl

TEST_DIR = Path("data/manifests/test")
OUT_DIR = Path("data/eval")
MISSING_FILE = Path(".tatar/eval/missing.txt")  # the full list when images are missing (outside DVC outputs)
CHECKPOINT_ENV = "TATAR_EVAL_CHECKPOINT"
SHOW_MISSING = 10


class EvaluationInputError(RuntimeError):
    """A benchmark cannot be evaluated; the message lists what is missing per benchmark."""


def manifest_path(name: str, test_dir: Path = TEST_DIR) -> Path:
    """``<test_dir>/<name>.jsonl``, or the registry's canonical name for an alias (``koniq`` -> ``KonIQ-10K``)."""
    path = test_dir / f"{name}.jsonl"
    if path.is_file():
        return path
    from tatar.data.registry import get_benchmark

    try:
        return test_dir / f"{get_benchmark(name).name}.jsonl"
    except KeyError:
        return path


def load_benchmark(name: str, test_dir: Path = TEST_DIR) -> tuple[list[ManifestRecord], list[str]]:
    """A benchmark's records, and the problems that prevent scoring it (missing manifest or image files)."""
    path = manifest_path(name, test_dir)
    if not path.is_file():
        hint = f"import the benchmark with `tatar data import {name} --images DIR` and list it in data.benchmarks"
        return [], [f"manifest {path} not found ({hint})"]
    records = read_records(path, ManifestRecord)
    if not records:
        return [], [f"manifest {path} is empty"]
    tasks = {r.task for r in records}
    if len(tasks) > 1:
        return [], [f"manifest {path} mixes tasks {sorted(tasks)}; a benchmark holds one task"]
    missing = [str(r.path) for r in records if not r.path.is_file()]
    return records, [f"image {p} not found" for p in missing]


def check_benchmarks(cfg: EvalConfig, test_dir: Path = TEST_DIR) -> tuple[dict[str, list[ManifestRecord]],
                                                                           dict[str, str]]:
    """Benchmarks ready to score and, with ``skip_missing``, the skipped ones with the reason.

    Without ``skip_missing`` any problem raises, listing the first few per benchmark (all in MISSING_FILE)."""
    ready, skipped, problems = {}, {}, {}
    for name in cfg.benchmarks:
        records, issues = load_benchmark(name, test_dir)
        if not issues:
            ready[name] = records
            continue
        problems[name] = issues
        skipped[name] = issues[0] if len(issues) == 1 else f"{len(issues)} of {len(records)} images not found"
    if problems:
        MISSING_FILE.parent.mkdir(parents=True, exist_ok=True)
        write_text(MISSING_FILE, "".join(f"{name}: {i}\n" for name, issues in problems.items() for i in issues))
        listing = "\n".join(
            f"  {name}: {skipped[name]}" + "".join(f"\n    - {i}" for i in issues[:SHOW_MISSING] if len(issues) > 1)
            + (f"\n    ... ({len(issues) - SHOW_MISSING} more)" if len(issues) > SHOW_MISSING else "")
            for name, issues in problems.items())
        if not cfg.skip_missing:
            raise EvaluationInputError(f"cannot evaluate {len(problems)} benchmark(s) (full list in {MISSING_FILE}; "
                                       f"set eval.skip_missing: true to skip them):\n{listing}")
        print(f"evaluate: WARNING skipping {len(problems)} benchmark(s) (eval.skip_missing):\n{listing}",
              file=sys.stderr)
        if not ready:
            raise EvaluationInputError("every benchmark was skipped; nothing to evaluate")
    return ready, skipped


def score_benchmark(scorer, name: str, records: list[ManifestRecord]) -> tuple[list[Prediction], float]:
    """Predictions in manifest order, and the seconds spent (reading images + generating)."""
    task = records[0].task
    start = time.perf_counter()
    results = scorer.score([r.path for r in records], task=task, progress=True)
    seconds = time.perf_counter() - start
    unreadable = [r.error for r in results if r.error]
    if unreadable:  # prepare hashed these files, so this is damage since, not a skippable gap
        raise EvaluationInputError(f"{name}: {len(unreadable)} unreadable image(s):\n  " + "\n  ".join(unreadable))
    predictions = [Prediction(id=rec.id, benchmark=name, task=task, image=str(rec.path), score_100=rec.score_100,
                              pred=res.score, think_words=res.think_words, raw=res.raw)
                   for rec, res in zip(records, results, strict=True)]
    return predictions, seconds


def evaluate(cfg: EvalConfig, checkpoint: str, out_dir: Path = OUT_DIR, test_dir: Path = TEST_DIR) -> EvalMetrics:
    """Score every ready benchmark with ``checkpoint`` and write predictions, metrics and the report."""
    from tatar.scorer import Scorer

    benchmarks, skipped = check_benchmarks(cfg, test_dir)
    scorer = Scorer(checkpoint, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                    use_vllm=cfg.use_vllm, readout=cfg.readout)
    predictions, summaries = {}, {}
    for name, records in benchmarks.items():
        print(f"evaluate: {name} ({records[0].task.upper()}, {len(records)} images)")
        predictions[name], seconds = score_benchmark(scorer, name, records)
        summaries[name] = summarise(predictions[name], seconds)
    metrics = EvalMetrics.collect(checkpoint, summaries, skipped, cfg.readout,
                                  {name: by_distortion(preds) for name, preds in predictions.items()})

    shutil.rmtree(out_dir / "predictions", ignore_errors=True)  # no stale benchmarks from an earlier run
    shutil.rmtree(out_dir / "plots", ignore_errors=True)
    for name, preds in predictions.items():
        write_jsonl(out_dir / "predictions" / f"{name}.jsonl", preds)
    write_json(out_dir / "metrics.json", metrics.model_dump(mode="json"))
    write_report(predictions, metrics, out_dir, previous_metrics())
    print(metrics_table(metrics))
    if metrics.distortions:
        print("evaluate: SRCC by distortion (across references; within each reference, mean)\n"
              + distortion_tables(metrics))
    for note in spread_notes(metrics):
        print(f"evaluate: WARNING {note}")
    print(f"evaluate: wrote {out_dir}/metrics.json, report.md, predictions/ and plots/")
    return metrics


def run(params: Params, checkpoint: str | Path | None = None) -> None:
    from tatar.modeling import ModelLoadError

    checkpoint = str(checkpoint or os.environ.get(CHECKPOINT_ENV) or params.eval.checkpoint)
    try:
        evaluate(params.eval, checkpoint)
    except (EvaluationInputError, ModelLoadError) as exc:
        raise SystemExit(f"evaluate: {exc}") from None
