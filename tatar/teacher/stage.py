"""Stage ``rationales``: ask the teacher to explain every training label, fast for IQA and slow for IAA.

    train manifest --(prompt files, image as data URL)--> teacher --(normalise / re-ask)--> rationales.jsonl
                                                                                      \\--> failures.jsonl

Every record ends in exactly one of the two files. Replies are cached per record under ``teacher.cache_dir``
(outside DVC's outputs), keyed by what the teacher sees, so a re-run after k records change asks k questions
and a killed run resumes where it stopped. The output files are written atomically at the end (the cache is the
journal), so a crash never leaves a torn or duplicated line in them.
"""

from __future__ import annotations

import base64
import mimetypes
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from rich.console import Console
from rich.table import Table

from tatar.config import Params, TeacherConfig
from tatar.errors import InvalidDataError, MissingInputError
from tatar.records import ManifestRecord, RationaleRecord, TeacherIdentity, read_records, write_json, write_jsonl
from tatar.teacher import REFERENCE_MODEL, REFERENCE_REVISION
from tatar.teacher.cache import cache_key
from tatar.teacher.client import ChatRun, Endpoint, Failure, Job, RunStats, Sampling, run_chat
from tatar.teacher.normalise import check, normalise
from tatar.teacher.prompts import PromptSet, load_prompts

TRAIN_MANIFEST = Path("data/manifests/train.jsonl")
OUT_DIR = Path("data/rationales")


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

    result: ChatRun = run_chat(Endpoint.of(cfg), [teacher_job(r, cfg, prompts) for r in askable], accept,
                               label="rationales", progress=progress)
    rationales = {reply.id: to_rationale(by_id[reply.id], reply.text, reply.key, cfg) for reply in result.replies}
    failures = {f.id: f for f in result.failures}
    failures.update({i: Failure(i, f"missing_image: {by_id[i].path} does not exist", 0) for i in missing})
    result.stats.failed = len(failures)
    result.stats.failures_by_kind = dict(Counter(f.reason.split(":")[0] for f in failures.values()))
    assert len(rationales) + len(failures) == len(records), "every record must end in exactly one output"
    return Generated(rationales=[rationales[r.id] for r in records if r.id in rationales],
                     failures=[failures[r.id] for r in records if r.id in failures], stats=result.stats)


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
        model=cfg.model,
        sampling=vars(sampling(cfg, record)),
        # The reference teacher's own code version, so improving it re-asks it (real models have a name).
        revision=REFERENCE_REVISION if cfg.model == REFERENCE_MODEL else None,
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


def to_rationale(record: ManifestRecord, raw: str, key: str, cfg: TeacherConfig) -> RationaleRecord:
    clean = normalise(raw, record.task, record.score_100, words(cfg, record))
    s = sampling(cfg, record)
    return RationaleRecord(
        id=record.id, task=record.task, dataset=record.dataset, image=record.image, root=record.root,
        score_100=record.score_100, attributes=record.attributes,
        teacher=TeacherIdentity(model=cfg.model, prompt_version=cfg.prompt_version, temperature=s.temperature,
                                top_p=s.top_p, max_tokens=s.max_tokens),
        raw=raw, think=clean.think, answer=clean.answer, think_words=clean.words, cache_key=key,
    )


def summarise(records: list[ManifestRecord], generated: Generated, cfg: TeacherConfig) -> dict:
    stats = generated.stats
    by_task = {}
    for task in ("iqa", "iaa"):
        kept = [r for r in generated.rationales if r.task == task]
        by_task[task] = {
            "records": sum(r.task == task for r in records),
            "rationales": len(kept),
            "think_words_mean": round(mean(r.think_words for r in kept), 1) if kept else 0.0,
        }
    return {
        "records": len(records),
        "rationales": len(generated.rationales),
        "failures": len(generated.failures),
        "outcomes": {"cached": stats.cached, "generated": stats.answered, "failed": len(generated.failures)},
        "failures_by_kind": stats.failures_by_kind,
        "by_task": by_task,
        "teacher": {
            "model": cfg.model,
            "prompt_version": cfg.prompt_version,
            "calls": stats.calls,
            "http_retries": stats.http_retries,
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
                            f"{row['think_words_mean']} words on average")
    t = metrics["teacher"]
    table.add_row("teacher calls", f"{t['calls']} ({t['reasks']} re-asks, {t['http_retries']} transport retries)")
    table.add_row("tokens", f"{t['prompt_tokens']} prompt, {t['completion_tokens']} completion")
    table.add_row("rate", f"{t['requests_per_s']} requests/s over {t['seconds']} s")
    Console().print(table)
