"""Stage ``validate``: ``data/rationales/rationales.jsonl`` -> ``data/corpus/`` (kept, rejected, GX, metrics).

Three gates, each record rejected for the first check it fails:

1. the Great Expectations suite over the whole table (column contract: non-null, value sets, ranges, answer
   format, think length per task, empty and duplicate rationales), then the record schema;
2. the hard rules (structure, answer = ground truth, contamination, score leak, IAA attribute coverage), then the
   token budget (``over_budget``: the target, in the base model's tokens, must fit the GRPO and evaluation
   generation budgets; ``tatar.validation.budget``);
3. the LLM judge, when ``validate.judge.enabled``.

Every input record ends in exactly one of ``corpus.jsonl`` and ``rejected.jsonl``. A task whose keep rate falls
below its minimum fails the stage (outputs but the corpus are still written, to show why).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import track
from rich.table import Table

from tatar.atomic_write import write_text
from tatar.config import Params, ValidateConfig
from tatar.errors import MissingInputError
from tatar.records import RationaleRecord, numbered_rows, read_jsonl, write_json, write_jsonl
from tatar.validation.budget import TokenBudget, print_length_table, split_by_budget
from tatar.validation.report import Rejection, enforce_keep_rates, keep_metrics, summary_markdown
from tatar.validation.rules import first_failure

RATIONALES = Path("data/rationales/rationales.jsonl")
TEACHER_FAILURES = Path("data/rationales/failures.jsonl")
TRAIN_MANIFEST = Path("data/manifests/train.jsonl")
CORPUS_DIR = Path("data/corpus")


@dataclass
class Split:
    kept: list[RationaleRecord]
    rejected: list[Rejection]
    judge: dict | None = field(default=None)  # judge run statistics when it ran
    target_tokens: dict | None = field(default=None)  # per-task target length in tokens when a budget was given


def _schema_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" + (f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


def split_rationales(rows: list[dict], cfg: ValidateConfig, gx_dir: str | Path, progress: bool = True,
                     budget: TokenBudget | None = None) -> Split:
    """Run the three gates over raw rationale dicts; GX results and data docs go to ``gx_dir``. With ``budget``,
    targets longer than it (in its tokenizer's tokens) are rejected as ``over_budget`` before the judge."""
    from tatar.validation.expectations import run_suite  # GX takes seconds to import

    rejected: list[Rejection] = []
    with_id = []
    for line, row in enumerate(rows, start=1):
        if not isinstance(row, dict):  # valid JSON of the wrong type: a rejected record, never a crash
            rejected.append(Rejection(id=f"<line {line}>", task=None, check="schema",
                                      detail=f"record is a JSON {type(row).__name__}, not an object"))
        elif isinstance(row.get("id"), str) and row["id"]:
            with_id.append(row)
        else:
            rejected.append(Rejection(id=f"<line {line}>", task=row.get("task"), check="schema",
                                      detail=f"record has no string 'id' (got {row.get('id')!r})"))

    gx_failures = run_suite(with_id, cfg, gx_dir).failures
    candidates = []
    for row in track(with_id, description="rules", transient=True, disable=not progress):
        task = row.get("task")
        if failure := gx_failures.get(row["id"]):
            rejected.append(Rejection(id=row["id"], task=task, check=failure.check, detail=failure.detail))
            continue
        try:
            record = RationaleRecord.model_validate(row)
        except ValidationError as exc:
            rejected.append(Rejection(id=row["id"], task=task, check="schema", detail=_schema_error(exc)))
            continue
        if failure := first_failure(record, cfg):
            rejected.append(Rejection(id=record.id, task=task, check=failure.check, detail=failure.detail))
        else:
            candidates.append(record)

    tokens = None
    if budget is not None:
        candidates, over, tokens = split_by_budget(candidates, budget)
        rejected += over
    if not cfg.judge.enabled or not candidates:
        return Split(candidates, rejected, target_tokens=tokens)
    from tatar.validation.judge import judge_records

    outcome = judge_records(candidates, cfg.judge, progress=progress)
    kept = []
    for record in candidates:
        if failure := outcome.failures.get(record.id):
            rejected.append(Rejection(id=record.id, task=record.task, check=failure.check, detail=failure.detail))
        else:
            kept.append(record)
    return Split(kept, rejected, judge={"enabled": True, **outcome.stats}, target_tokens=tokens)


def _print_summary(metrics: dict) -> None:
    table = Table(title="validate", title_justify="left")
    for col in ("task", "records", "kept", "keep rate", "top reasons"):
        table.add_column(col)
    for task in ("iqa", "iaa"):
        m = metrics[task]
        reasons = ", ".join(f"{c} {n}" for c, n in list(m["rejected"].items())[:3])
        rate = "-" if m["keep_rate"] is None else f"{m['keep_rate']:.1%}"
        table.add_row(task, str(m["records"]), str(m["kept"]), rate, reasons or "-")
    Console(stderr=True).print(table)


def validate_corpus(rationales: Path, out_dir: Path, cfg: ValidateConfig, progress: bool = True,
                    budget: TokenBudget | None = None, manifest: Path | None = None,
                    teacher_failures: Path | None = None) -> dict:
    """Write ``out_dir/{corpus,rejected}.jsonl``, ``metrics.json`` and ``gx/``; return the metrics.
    With ``manifest``, keep rates are over the manifest's records of each task: a record the teacher never
    answered is rejected as ``teacher`` (its reason from ``teacher_failures``), so a failing teacher cannot shrink
    the corpus silently. Raises KeepRateError (after writing everything but the corpus) when a task's keep rate
    is too low."""
    if not rationales.exists():
        raise MissingInputError(f"{rationales} not found: run the rationales stage first (tatar stage rationales)")
    corpus, gx_dir = out_dir / "corpus.jsonl", out_dir / "gx"
    corpus.unlink(missing_ok=True)  # never leave a stale corpus next to fresh rejections
    shutil.rmtree(gx_dir, ignore_errors=True)

    rows = [row for _, row in numbered_rows(rationales, objects_only=False)]  # a non-object line is rejected below
    split = split_rationales(rows, cfg, gx_dir, progress=progress, budget=budget)
    if manifest is not None:
        split.rejected += unanswered(manifest, rows, teacher_failures)
    metrics = keep_metrics(split.kept, split.rejected, split.judge)
    if split.target_tokens is not None:
        metrics["target_tokens"] = split.target_tokens
        print_length_table(split.target_tokens)
    write_jsonl(out_dir / "rejected.jsonl", split.rejected)
    write_json(out_dir / "metrics.json", metrics)
    write_text(gx_dir / "summary.md", summary_markdown(metrics, split.rejected, cfg))
    _print_summary(metrics)
    enforce_keep_rates(metrics, split.rejected, cfg)
    write_jsonl(corpus, split.kept)
    return metrics


def unanswered(manifest: Path, rows: list[dict], teacher_failures: Path | None) -> list[Rejection]:
    """A ``teacher`` rejection for every manifest record without a rationale, with the teacher's failure reason."""
    if not manifest.exists():
        return []
    answered = {row.get("id") for row in rows if isinstance(row, dict)}
    reasons = {f.get("id"): f.get("reason", "") for f in read_jsonl(teacher_failures)} if teacher_failures else {}
    return [Rejection(id=r["id"], task=r.get("task"), check="teacher",
                      detail=reasons.get(r["id"]) or f"no rationale for this record in {RATIONALES}")
            for r in read_jsonl(manifest) if r.get("id") not in answered]


def run(params: Params) -> None:
    validate_corpus(RATIONALES, CORPUS_DIR, params.validate, budget=TokenBudget.from_params(params),
                    manifest=TRAIN_MANIFEST, teacher_failures=TEACHER_FAILURES)
