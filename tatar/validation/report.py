"""Keep rates, the rejection log, the markdown summary and the keep-rate policy of the validate stage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from tatar.config import ValidateConfig
from tatar.errors import TatarError
from tatar.records import RationaleRecord

TASKS = ("iqa", "iaa")
EXAMPLES = 3  # example ids per reason in messages and the summary


class Rejection(BaseModel):
    """One line of ``rejected.jsonl``: the record, the first check it failed, and the evidence."""

    id: str
    task: str | None
    check: str
    detail: str


class KeepRateError(TatarError):
    """A task kept fewer records than ``validate.min_keep_rate_<task>``: the teacher (or a rule) is broken."""


def keep_metrics(kept: Sequence[RationaleRecord], rejected: Sequence[Rejection], judge: dict | None) -> dict:
    """``metrics.json``: records, kept and keep rate overall and per task; rejections per reason and task."""
    kept_by_task = Counter(r.task for r in kept)
    rejected_by_task = Counter(r.task for r in rejected)
    total = len(kept) + len(rejected)
    metrics = {"records": total, "kept": len(kept), "keep_rate": round(len(kept) / total, 4) if total else 0.0}
    for task in TASKS:
        n = kept_by_task[task] + rejected_by_task[task]
        metrics[task] = {
            "records": n,
            "kept": kept_by_task[task],
            "keep_rate": round(kept_by_task[task] / n, 4) if n else None,
            "rejected": dict(Counter(r.check for r in rejected if r.task == task).most_common()),
        }
    by_reason = Counter(r.check for r in rejected)
    metrics["rejected"] = dict(by_reason.most_common())
    metrics["reject_rate"] = {check: round(n / total, 4) for check, n in by_reason.most_common()}
    metrics["judge"] = judge or {"enabled": False}
    return metrics


def examples(rejected: Sequence[Rejection], check: str, task: str | None = None) -> list[str]:
    return [r.id for r in rejected if r.check == check and (task is None or r.task == task)][:EXAMPLES]


def min_keep_rate(cfg: ValidateConfig, task: str) -> float:
    return cfg.min_keep_rate_iqa if task == "iqa" else cfg.min_keep_rate_iaa


def policy_failures(metrics: dict, rejected: Sequence[Rejection], cfg: ValidateConfig) -> list[str]:
    """One message per task below its minimum keep rate, naming the top reasons with example ids."""
    if metrics["records"] == 0:
        return ["no rationale records to validate (did the rationales stage produce any?)"]
    messages = []
    for task in TASKS:
        m, floor = metrics[task], min_keep_rate(cfg, task)
        if not m["records"] or m["keep_rate"] >= floor:
            continue
        reasons = "; ".join(f"{check} x{n} (e.g. {', '.join(examples(rejected, check, task))})"
                            for check, n in list(m["rejected"].items())[:3])
        messages.append(f"{task}: kept {m['kept']}/{m['records']} = {m['keep_rate']:.1%} < "
                        f"validate.min_keep_rate_{task} {floor:.0%}; top reasons: {reasons}")
    return messages


def enforce_keep_rates(metrics: dict, rejected: Sequence[Rejection], cfg: ValidateConfig) -> None:
    if failures := policy_failures(metrics, rejected, cfg):
        raise KeepRateError("validate: keep rate below the minimum, the corpus was not written.\n  "
                            + "\n  ".join(failures) + "\n  (details: data/corpus/rejected.jsonl)")


def summary_markdown(metrics: dict, rejected: Sequence[Rejection], cfg: ValidateConfig) -> str:
    """The stage's report in markdown (published as a Prefect artifact by the pipeline flow)."""
    lines = ["# Corpus validation", "",
             f"Kept **{metrics['kept']} of {metrics['records']}** rationales ({metrics['keep_rate']:.1%}).", "",
             "| task | records | kept | keep rate | minimum |", "|---|---:|---:|---:|---:|"]
    for task in TASKS:
        m = metrics[task]
        rate = "-" if m["keep_rate"] is None else f"{m['keep_rate']:.1%}"
        lines.append(f"| {task} | {m['records']} | {m['kept']} | {rate} | {min_keep_rate(cfg, task):.0%} |")
    if metrics["rejected"]:
        lines += ["", "| check | iqa | iaa | share | examples |", "|---|---:|---:|---:|---|"]
        for check in metrics["rejected"]:
            per_task = [metrics[t]["rejected"].get(check, 0) for t in TASKS]
            ids = ", ".join(f"`{i}`" for i in examples(rejected, check))
            lines.append(f"| {check} | {per_task[0]} | {per_task[1]} | {metrics['reject_rate'][check]:.1%} | {ids} |")
    judge = metrics["judge"]
    lines += ["", f"Judge: {'on' if judge.get('enabled') else 'off'}"
              + (f" ({judge.get('calls', 0)} calls, {judge.get('cached', 0)} cached, {judge.get('failed', 0)} failed)"
                 if judge.get("enabled") else ""),
              "", "Great Expectations data docs: `data/corpus/gx/index.html`; result: "
              "`data/corpus/gx/validation_result.json`; rejections: `data/corpus/rejected.jsonl`."]
    if failures := policy_failures(metrics, rejected, cfg):
        lines += ["", "**Policy failed:**", *(f"- {f}" for f in failures)]
    return "\n".join(lines) + "\n"
