"""The ``prepare`` stage: build or import every dataset, run the raw-data checks, write the manifests.

Outputs (relative to the project root)::

    data/synthetic/{iqa,iaa}/{train,test}/*.png     the embedded default (when data.synthetic.enabled)
    data/manifests/train.jsonl                      every training record, both tasks
    data/manifests/val.jsonl                        held-out training images scored during SFT/GRPO (data.validation)
    data/manifests/test/<name>.jsonl                synthetic_iqa, synthetic_iaa and each of data.benchmarks
    data/manifests/quarantine.jsonl                 rejected records: id, dataset, split, reason, detail
    data/manifests/report.{md,json}                 counts per dataset/task/split, quarantine by reason

The stage fails only by the policy in ``data.quarantine`` - more than ``max_fraction`` of the records
quarantined, or (``overlap: fail``) any training image that is also a test image - and then names the
records and reasons. Everything is written before it fails, so the report can be read.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tatar.atomic_write import write_text
from tatar.config import DataConfig, Params
from tatar.data.checks import (
    TRAIN_TEST_OVERLAP,
    CheckResult,
    QuarantineRecord,
    RawRow,
    run_checks,
)
from tatar.data.hygiene import label_warnings, overlap_by_dataset
from tatar.data.importers import import_train_set, imported_benchmark_rows
from tatar.data.registry import get_benchmark
from tatar.data.split import validation_split
from tatar.data.synthetic import build_synthetic
from tatar.data.synthetic_iaa import DATASET as SYNTHETIC_IAA
from tatar.data.synthetic_iqa import DATASET as SYNTHETIC_IQA
from tatar.errors import TatarError
from tatar.records import ManifestRecord, write_json, write_jsonl

SYNTHETIC_DIR = Path("data/synthetic")
MANIFEST_DIR = Path("data/manifests")
VAL_MANIFEST = "val.jsonl"
SHOWN_IN_ERRORS = 20


class DataPolicyError(TatarError):
    """Prepare failed by the data.quarantine policy; the message names the records and reasons."""


@dataclass
class Manifests:
    """Where prepare wrote its manifests (absolute when the project dir was given absolute)."""

    train: Path
    test: dict[str, Path]  # test set name -> manifest
    quarantine: Path
    report: Path


def run(params: Params) -> None:
    prepare(params.data, Path("."))


def collect_rows(cfg: DataConfig, project: Path,
                 notes: list[str] | None = None) -> tuple[list[RawRow], list[QuarantineRecord]]:
    """Candidate rows from every source in params, plus rows the importers could not even read; ``notes`` gets a
    line per source whose split selection left rows out."""
    # Cheap sources first, so a missing file or bad config fails before the synthetic build.
    rows: list[RawRow] = [row for name in cfg.benchmarks for row in imported_benchmark_rows(name, project)]
    malformed: list[QuarantineRecord] = []
    for train_set in cfg.train:
        imported = import_train_set(train_set)
        rows += imported.rows
        malformed += imported.quarantined
        if imported.not_selected and notes is not None:
            notes.append(f"{train_set.name}: rows of split(s) {dict(imported.not_selected)} left out by the split "
                         f"selection (splits: {train_set.splits or 'format default'})")
    if cfg.synthetic.enabled:
        rows += build_synthetic(cfg.synthetic, cfg.seed, project / SYNTHETIC_DIR)
    else:  # still a DVC output of prepare: present (empty) so the stage's outputs exist
        (project / SYNTHETIC_DIR).mkdir(parents=True, exist_ok=True)
    return rows, malformed


def prepare(cfg: DataConfig, project: Path) -> Manifests:
    started = time.perf_counter()
    benchmarks = [get_benchmark(name).name for name in cfg.benchmarks]  # fail early on an unknown name
    notes: list[str] = []
    rows, malformed = collect_rows(cfg, project, notes)
    result = run_checks(rows)
    result.quarantined = malformed + result.quarantined

    out = project / MANIFEST_DIR
    test_names = ([SYNTHETIC_IQA, SYNTHETIC_IAA] if cfg.synthetic.enabled else []) + benchmarks
    manifests = Manifests(train=out / "train.jsonl", test={n: out / "test" / f"{n}.jsonl" for n in test_names},
                          quarantine=out / "quarantine.jsonl", report=out / "report.md")
    train, val = validation_split([r for r in result.records if r.split == "train"], cfg.validation.fraction,
                                  cfg.seed, cfg.validation.max_per_task)
    write_jsonl(manifests.train, train)
    write_jsonl(out / VAL_MANIFEST, val)  # always written (maybe empty): SFT and GRPO depend on it
    for name, path in manifests.test.items():
        write_jsonl(path, [r for r in result.records if r.split == "test" and r.dataset == name])
    write_jsonl(manifests.quarantine, result.quarantined)
    report = build_report(result, len(rows) + len(malformed), time.perf_counter() - started)
    report["overlap_excluded"] = overlap_by_dataset(result.quarantined) if cfg.quarantine.excludes_overlap else {}
    report["notes"] = notes + label_warnings(cfg, result.records)
    for note in report["notes"]:
        print(f"prepare: warning: {note}")
    write_json(out / "report.json", report)
    write_text(manifests.report, render_report(report, result.quarantined))
    print(summary_line(report, manifests))
    print(f"prepare: {len(val)} of those train records held out for validation -> {out / VAL_MANIFEST}")
    if not any(r.split == "train" for r in result.records):
        raise DataPolicyError(f"prepare: no training records; enable data.synthetic or add data.train entries "
                              f"({report['quarantined']} quarantined, see {manifests.report})")
    enforce_policy(cfg, result.quarantined, report["candidates"], manifests.quarantine)
    return manifests


# ------------------------------------------------------------------------------------------- report
def _score_stats(records: list[ManifestRecord]) -> dict[str, float]:
    scores = [r.score_100 for r in records]
    return {"min": round(min(scores), 2), "mean": round(sum(scores) / len(scores), 2), "max": round(max(scores), 2)}


def build_report(result: CheckResult, candidates: int, seconds: float) -> dict:
    groups: dict[tuple[str, str, str], list[ManifestRecord]] = defaultdict(list)
    for r in result.records:
        groups[(r.dataset, r.task, r.split)].append(r)
    return {
        "candidates": candidates,
        "kept": len(result.records),
        "quarantined": len(result.quarantined),
        "quarantined_fraction": round(len(result.quarantined) / max(candidates, 1), 6),
        "datasets": [{"dataset": d, "task": t, "split": s, "records": len(recs), "score_100": _score_stats(recs),
                      "with_attributes": sum(r.attributes is not None for r in recs)}
                     for (d, t, s), recs in sorted(groups.items())],
        "quarantine_by_reason": dict(sorted(Counter(q.reason for q in result.quarantined).items())),
        "quarantine_by_dataset": dict(sorted(Counter(q.dataset for q in result.quarantined).items())),
        "seconds": round(seconds, 2),
    }


def render_report(report: dict, quarantined: list[QuarantineRecord]) -> str:
    lines = ["# Data report (prepare)", "",
             f"{report['kept']} records kept, {report['quarantined']} quarantined "
             f"({100 * report['quarantined_fraction']:.2f}% of {report['candidates']}).", "",
             "| dataset | task | split | records | score_100 min / mean / max | with attributes |",
             "|---|---|---|---|---|---|"]
    for d in report["datasets"]:
        s = d["score_100"]
        lines.append(f"| {d['dataset']} | {d['task']} | {d['split']} | {d['records']} | "
                     f"{s['min']} / {s['mean']} / {s['max']} | {d['with_attributes']} |")
    if report.get("overlap_excluded"):
        lines += ["", "## Training images excluded as test images (data.quarantine.overlap: exclude)", "",
                  "| dataset | excluded |", "|---|---|"]
        lines += [f"| {d} | {n} |" for d, n in report["overlap_excluded"].items()]
    if report.get("notes"):
        lines += ["", "## Warnings", ""] + [f"- {note}" for note in report["notes"]]
    if quarantined:
        lines += ["", "## Quarantine by reason", "", "| reason | records |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in report["quarantine_by_reason"].items()]
        lines += ["", "## Quarantined records", "",
                  "| id | dataset | split | reason | detail |", "|---|---|---|---|---|"]
        lines += [f"| {q.id} | {q.dataset} | {q.split} | {q.reason} | {q.detail.replace('|', '/')} |"
                  for q in quarantined]
    return "\n".join(lines) + "\n"


def summary_line(report: dict, manifests: Manifests) -> str:
    per_split = Counter()
    for d in report["datasets"]:
        per_split[(d["split"], d["task"])] += d["records"]
    counts = ", ".join(f"{split} {task} {n}" for (split, task), n in sorted(per_split.items()))
    return (f"prepare: {counts}; {report['quarantined']} quarantined -> {manifests.quarantine}; "
            f"report {manifests.report} ({report['seconds']} s)")


# ------------------------------------------------------------------------------------------- policy
def _listing(records: list[QuarantineRecord]) -> str:
    shown = [f"  {q.id} [{q.dataset}/{q.split}] {q.reason}: {q.detail}" for q in records[:SHOWN_IN_ERRORS]]
    if len(records) > SHOWN_IN_ERRORS:
        shown.append(f"  ... and {len(records) - SHOWN_IN_ERRORS} more")
    return "\n".join(shown)


def enforce_policy(cfg: DataConfig, quarantined: list[QuarantineRecord], candidates: int,
                   quarantine_file: Path = MANIFEST_DIR / "quarantine.jsonl") -> None:
    """Raise DataPolicyError when data.quarantine says the data are not fit to train on."""
    policy = cfg.quarantine
    problems = []
    overlap = [q for q in quarantined if q.reason == TRAIN_TEST_OVERLAP]
    if policy.excludes_overlap:  # excluded by choice: reported per dataset, not a data-quality failure
        quarantined = [q for q in quarantined if q.reason != TRAIN_TEST_OVERLAP]
        candidates -= len(overlap)
    elif policy.overlap == "fail" and overlap:
        problems.append(f"{len(overlap)} training image(s) also in a test set "
                        f"(data.quarantine.overlap is fail; set it to exclude to drop them):\n{_listing(overlap)}")
    fraction = len(quarantined) / max(candidates, 1)
    if fraction > policy.max_fraction:
        problems.append(f"{len(quarantined)} of {candidates} records quarantined ({100 * fraction:.2f}%), more than "
                        f"data.quarantine.max_fraction = {policy.max_fraction:g}:\n{_listing(quarantined)}")
    if problems:
        raise DataPolicyError("prepare failed by the data policy; all records and reasons are in "
                              f"{quarantine_file} and report.md\n" + "\n".join(problems))
