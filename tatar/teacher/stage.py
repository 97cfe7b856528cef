"""Stage ``rationales``: ask the teacher to explain every training label, fast for IQA and slow for IAA.

    train manifest --(prompt files, image as data URL)--> teacher --(normalise / re-ask)--> rationales.jsonl
                                                                                      \\--> failures.jsonl

Every record ends in exactly one of the two files. Replies are cached per record under ``teacher.cache_dir``
(outside DVC's outputs), keyed by what the teacher sees, so a re-run after k records change asks k questions
and a killed run resumes where it stopped. The output files are written atomically at the end (the cache is the
journal), so a crash never leaves a torn or duplicated line in them.

Each task may have its own teacher (``teacher.iqa`` / ``teacher.iaa`` set ``base_url``, ``model``,
``api_key_env``; the paper asks a VLM for IQA and a reasoning model for IAA): each distinct teacher gets its own
run, and its model is part of its records' cache keys, so changing the IAA teacher re-asks IAA records only. After
writing its outputs the stage fails when a task's teacher answered fewer than ``teacher.min_success_rate`` of
that task's records, naming the top failure reasons with example ids.
"""

from __future__ import annotations

import base64
import mimetypes
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean

from rich.console import Console
from rich.table import Table

from tatar.config import Params, TeacherConfig
from tatar.errors import InvalidDataError, MissingInputError, TatarError, TransientError
from tatar.reasoning import split_reasoning
from tatar.records import ManifestRecord, RationaleRecord, TeacherIdentity, read_records, write_json, write_jsonl
from tatar.redact import public_url
from tatar.teacher.cache import cache_key
from tatar.teacher.client import Endpoint, Failure, Job, Reply, RunStats, Sampling, run_chat, standin_revision
from tatar.teacher.normalise import check, normalise
from tatar.teacher.prompts import PromptSet, load_prompts

TRAIN_MANIFEST = Path("data/manifests/train.jsonl")
OUT_DIR = Path("data/rationales")
TASKS = ("iqa", "iaa")
EXAMPLES = 3  # example ids per failure reason in the gate's message


class TeacherGateError(TatarError):
    """A task's teacher answered fewer records than ``teacher.min_success_rate``: it is broken or misconfigured."""


class TeacherUnavailableError(TransientError, TeacherGateError):
    """The gate failed mostly on transport errors (endpoint down, overloaded): a retry may pass, and the cache keeps
    every answered record, so the orchestrator retries the stage and only the missing records are asked again."""


# Failure kinds of the transport, not of the teacher's replies (tatar.teacher.client).
TRANSPORT_KINDS = {"timeout", "rate_limited", "server_error", "connection"}


@dataclass
class Generated:
    rationales: list[RationaleRecord]
    failures: list[Failure]
    stats: RunStats


def run(params: Params) -> None:
    if not TRAIN_MANIFEST.exists():
        raise MissingInputError(f"{TRAIN_MANIFEST}: not found (run the prepare stage first)")
    records = read_records(TRAIN_MANIFEST, ManifestRecord)
    generated = generate(records, params.teacher)
    write_jsonl(OUT_DIR / "rationales.jsonl", generated.rationales)
    write_jsonl(OUT_DIR / "failures.jsonl", [{"id": f.id, "reason": f.reason, "attempts": f.attempts}
                                             for f in generated.failures])
    metrics = summarise(records, generated, params.teacher)
    write_json(OUT_DIR / "metrics.json", metrics)
    print_summary(metrics)
    enforce_success_rate(metrics, generated.failures, records, params.teacher)


def generate(records: list[ManifestRecord], cfg: TeacherConfig, progress: bool = True) -> Generated:
    """One outcome per record, in manifest order."""
    duplicates = [i for i, n in Counter(r.id for r in records).items() if n > 1]
    if duplicates:
        raise InvalidDataError(f"{TRAIN_MANIFEST}: duplicate record ids, e.g. {duplicates[:3]}")
    prompts = load_prompts(cfg.prompt_version)
    by_id = {r.id: r for r in records}
    missing = {r.id for r in records if prompts.render(r).with_image and not r.path.is_file()}
    askable = [r for r in records if r.id not in missing]

    def accept(job: Job, text: str) -> tuple[bool, str]:
        record = by_id[job.id]
        return check(text, record.task, record.score_100, words(cfg, record))

    rationales: dict[str, RationaleRecord] = {}
    failures: dict[str, Failure] = {}
    runs = []
    for endpoint, group in by_teacher(askable, cfg).items():
        tasks = sorted({r.task for r in group}, key=TASKS.index)
        result = run_chat(endpoint, [teacher_job(r, cfg, prompts) for r in group], accept,
                          label=f"rationales {'+'.join(tasks)}", progress=progress)
        rationales.update({reply.id: to_rationale(by_id[reply.id], reply, cfg) for reply in result.replies})
        failures.update({f.id: f for f in result.failures})
        runs.append(result.stats)
    failures.update({i: Failure(i, f"missing_image: {by_id[i].path} does not exist", 0) for i in missing})
    stats = RunStats.combined(runs)
    stats.failed = len(failures)
    stats.failures_by_kind = dict(Counter(f.reason.split(":")[0] for f in failures.values()))
    assert len(rationales) + len(failures) == len(records), "every record must end in exactly one output"
    return Generated(rationales=[rationales[r.id] for r in records if r.id in rationales],
                     failures=[failures[r.id] for r in records if r.id in failures], stats=stats)


def task_endpoint(cfg: TeacherConfig, task: str) -> Endpoint:
    """The task's teacher: its own base_url / model / api_key_env where set, the shared run settings."""
    own = cfg.for_task(task)
    return replace(Endpoint.of(cfg), base_url=own.base_url, model=own.model, api_key_env=own.api_key_env)


def by_teacher(records: list[ManifestRecord], cfg: TeacherConfig) -> dict[Endpoint, list[ManifestRecord]]:
    """Records grouped by the teacher that answers them (one group when both tasks share a teacher)."""
    groups: dict[Endpoint, list[ManifestRecord]] = {}
    for record in records:
        groups.setdefault(task_endpoint(cfg, record.task), []).append(record)
    return groups


def words(cfg: TeacherConfig, record: ManifestRecord) -> tuple[int, int]:
    return cfg.words_iqa if record.task == "iqa" else cfg.words_iaa


def sampling(cfg: TeacherConfig, record: ManifestRecord) -> Sampling:
    return Sampling.of(cfg.iqa if record.task == "iqa" else cfg.iaa)


def teacher_job(record: ManifestRecord, cfg: TeacherConfig, prompts: PromptSet) -> Job:
    rendered = prompts.render(record)

    def messages() -> list[dict]:
        content = [{"type": "text", "text": rendered.user}]
        if rendered.with_image:
            content.insert(0, {"type": "image_url", "image_url": {"url": image_data_url(record.path)}})
        return [{"role": "system", "content": rendered.system}, {"role": "user", "content": content}]

    return Job(id=record.id, key=record_key(record, cfg, prompts), messages=messages, sampling=sampling(cfg, record))


def record_key(record: ManifestRecord, cfg: TeacherConfig, prompts: PromptSet) -> str:
    """Everything that determines the teacher's answer, and nothing else: the image bytes (when sent), the
    rendered prompt (task, score to two decimals, attribute notes, template text), the prompt version, the
    model and its sampling. Ids, paths, the endpoint URL and concurrency settings do not change an answer."""
    rendered = prompts.render(record)
    return cache_key(
        task=record.task,
        image_sha256=record.sha256 if rendered.with_image else None,
        system=rendered.system,
        user=rendered.user,
        prompt_version=prompts.version,
        model=cfg.for_task(record.task).model,
        sampling=vars(sampling(cfg, record)),
        revision=standin_revision(task_endpoint(cfg, record.task)),
    )


def image_data_url(path: Path) -> str:
    """The file's own bytes as a base64 data URL (no re-encoding: the sha256 in the manifest still holds).
    Each file is encoded once while it stays unchanged: records sharing an image (both tasks, re-runs in one
    process, the benchmark) reuse the string from a small cache bounded by its total size."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    url = _DATA_URLS.get(key)
    if url is None:
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        url = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        _DATA_URLS.put(key, url)
    return url


class _SizedCache:
    """Least-recently-used strings up to ``max_chars`` in total."""

    def __init__(self, max_chars: int):
        self.max_chars, self.chars = max_chars, 0
        self.items: OrderedDict[tuple, str] = OrderedDict()

    def get(self, key: tuple) -> str | None:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key: tuple, value: str) -> None:
        if len(value) > self.max_chars:
            return
        if key in self.items:
            self.chars -= len(self.items[key])
        self.items[key] = value
        self.chars += len(value)
        while self.chars > self.max_chars:
            self.chars -= len(self.items.popitem(last=False)[1])


_DATA_URLS = _SizedCache(64 * 2**20)


def teacher_identity(cfg: TeacherConfig, task: str, served_model: str | None = None) -> TeacherIdentity:
    own = cfg.for_task(task)
    return TeacherIdentity(model=own.model, prompt_version=cfg.prompt_version, temperature=own.temperature,
                           top_p=own.top_p, max_tokens=own.max_tokens, base_url=public_url(own.base_url),
                           served_model=served_model if served_model and served_model != own.model else None)


def to_rationale(record: ManifestRecord, reply: Reply, cfg: TeacherConfig) -> RationaleRecord:
    clean = normalise(reply.text, record.task, record.score_100, words(cfg, record))
    reasoning = reply.reasoning or split_reasoning(reply.text)[0]
    return RationaleRecord(
        id=record.id, task=record.task, dataset=record.dataset, image=record.image, root=record.root,
        score_100=record.score_100, attributes=record.attributes,
        teacher=teacher_identity(cfg, record.task, reply.model),
        raw=reply.text, reasoning=reasoning or None, think=clean.think, answer=clean.answer,
        think_words=clean.words, cache_key=reply.key,
    )


def summarise(records: list[ManifestRecord], generated: Generated, cfg: TeacherConfig) -> dict:
    stats = generated.stats
    by_task = {}
    for task in TASKS:
        kept = [r for r in generated.rationales if r.task == task]
        n = sum(r.task == task for r in records)
        own = cfg.for_task(task)
        by_task[task] = {
            "records": n,
            "rationales": len(kept),
            "success_rate": round(len(kept) / n, 4) if n else None,
            "think_words_mean": round(mean(r.think_words for r in kept), 1) if kept else 0.0,
            "teacher": {"model": own.model, "base_url": public_url(own.base_url)},
        }
    return {
        "records": len(records),
        "rationales": len(generated.rationales),
        "failures": len(generated.failures),
        "outcomes": {"cached": stats.cached, "generated": stats.answered, "failed": len(generated.failures)},
        "failures_by_kind": stats.failures_by_kind,
        "by_task": by_task,
        "teacher": {
            "prompt_version": cfg.prompt_version,
            "calls": stats.calls,
            "http_retries": stats.http_retries,
            "retries_by_kind": stats.retries_by_kind,
            "reasks": stats.reasks,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "seconds": round(stats.seconds, 2),
            "requests_per_s": round(stats.calls_per_s, 2),
        },
    }


def print_summary(metrics: dict) -> None:
    table = Table(title="rationales", show_header=False)
    table.add_row("records", str(metrics["records"]))
    for outcome, n in metrics["outcomes"].items():
        table.add_row(f"  {outcome}", str(n))
    for kind, n in metrics["failures_by_kind"].items():
        table.add_row(f"    {kind}", str(n))
    for task, row in metrics["by_task"].items():
        table.add_row(task, f"{row['rationales']}/{row['records']} rationales, "
                            f"{row['think_words_mean']} words on average, from {row['teacher']['model']} "
                            f"at {row['teacher']['base_url']}")
    t = metrics["teacher"]
    retries = ", ".join(f"{kind} {n}" for kind, n in t["retries_by_kind"].items())
    table.add_row("teacher calls", f"{t['calls']} ({t['reasks']} re-asks, {t['http_retries']} transport retries"
                                   + (f": {retries})" if retries else ")"))
    table.add_row("tokens", f"{t['prompt_tokens']} prompt, {t['completion_tokens']} completion")
    table.add_row("rate", f"{t['requests_per_s']} requests/s over {t['seconds']} s")
    Console().print(table)


def enforce_success_rate(metrics: dict, failures: list[Failure], records: list[ManifestRecord],
                         cfg: TeacherConfig) -> None:
    """Fail (after the outputs are written) when a task's teacher answered too few of its records."""
    task_of = {r.id: r.task for r in records}
    problems, kinds = [], Counter()
    for task in TASKS:
        row = metrics["by_task"][task]
        if row["records"] == 0 or row["success_rate"] >= cfg.min_success_rate:
            continue
        by_kind: dict[str, list[str]] = {}
        for f in failures:
            if task_of[f.id] == task:
                by_kind.setdefault(f.reason.split(":")[0], []).append(f.id)
        kinds.update({kind: len(ids) for kind, ids in by_kind.items()})
        top = sorted(by_kind.items(), key=lambda kv: -len(kv[1]))[:3]
        reasons = "; ".join(f"{kind} x{len(ids)} (e.g. {', '.join(ids[:EXAMPLES])})" for kind, ids in top)
        problems.append(f"{task}: {row['rationales']}/{row['records']} = {row['success_rate']:.1%} < "
                        f"teacher.min_success_rate {cfg.min_success_rate:.0%} from {row['teacher']['model']} at "
                        f"{row['teacher']['base_url']}; top reasons: {reasons}")
    if problems:
        transport = sum(n for kind, n in kinds.items() if kind in TRANSPORT_KINDS)
        error = TeacherUnavailableError if transport * 2 > sum(kinds.values()) else TeacherGateError
        raise error("rationales: the teacher answered too few records (outputs written).\n  "
                    + "\n  ".join(problems) + f"\n  (details: {OUT_DIR / 'failures.jsonl'})")
