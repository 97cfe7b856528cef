"""The optional LLM judge: a JSON verdict per rationale, through the teacher's generic chat runner.

The judge sees the image, the ground-truth score, the attribute notes (IAA) and the rationale, and grades it
(IQA: visual_fidelity, technical_rigour, score_consistency; IAA: attribute_coverage, groundedness, cohesion,
smoothness; each 0-5) with a keep/reject decision and a list of issues. A record is kept when the decision is
keep and every score named in ``validate.judge.<task>_min`` is strictly above its threshold (the paper's rule).

Requests go through ``tatar.teacher.client`` (any OpenAI-compatible endpoint, bounded concurrency, transport
retries, a record-level cache): a verdict that is not valid JSON of the right shape is re-asked, and a record
whose verdict never arrives is rejected as ``judge_failure``, never silently kept.

The prompt uses the reference teacher's line convention (``TASK:``, ``SCORE:``, ``ATTRIBUTE name:``) plus a
``<rationale>`` block, so the local reference teacher recognises judge requests (``tatar.standins.judge``) and
answers them with verdicts grounded in its image measures.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tatar.config import JudgeConfig
from tatar.hashing import sha256_file
from tatar.parsing import format_score
from tatar.records import ATTRIBUTES, RationaleRecord, Task
from tatar.validation.rules import Failure
from tatar.validation.verdict import JUDGE_MARKER, SCORES, Verdict

PROMPTS_DIR = Path(__file__).parent / "prompts"
JSON_OBJECT_RE = re.compile(r"\{.*\}", re.DOTALL)


# -------------------------------------------------------------------------------------------- prompts
@cache
def system_prompt(task: Task, version: str) -> str:
    path = PROMPTS_DIR / f"judge_{task}_{version}.txt"
    if not path.exists():
        raise FileNotFoundError(f"judge prompt {path} not found (validate.judge.prompt_version={version!r})")
    text = path.read_text(encoding="utf-8").strip()
    if JUDGE_MARKER not in text:
        raise ValueError(f"{path}: a judge prompt must contain {JUDGE_MARKER!r} (the reference teacher keys on it)")
    return text


def request_text(record: RationaleRecord) -> str:
    lines = [f"TASK: {record.task}", f"SCORE: {format_score(record.score_100)}"]
    notes = record.attributes or {}
    lines += [f"ATTRIBUTE {name}: {notes[name]}" for name in ATTRIBUTES if name in notes]
    lines += ["Rationale to judge:", "<rationale>", record.think.strip(), "</rationale>"]
    return "\n".join(lines)


def image_part(path: Path) -> dict:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def judge_messages(record: RationaleRecord, cfg: JudgeConfig) -> list[dict]:
    return [
        {"role": "system", "content": system_prompt(record.task, cfg.prompt_version)},
        {"role": "user", "content": [image_part(record.path), {"type": "text", "text": request_text(record)}]},
    ]


# ------------------------------------------------------------------------------------------- verdicts
class VerdictError(ValueError):
    """A judge reply that is not a verdict; the message says why (and is sent back on a re-ask)."""


def parse_verdict(text: str, task: Task) -> Verdict:
    """The JSON object in ``text`` (code fences and chatter around it tolerated), checked key by key."""
    found = JSON_OBJECT_RE.search(text or "")
    if not found:
        raise VerdictError("no JSON object in the reply")
    try:
        data = json.loads(found.group(0))
    except json.JSONDecodeError as exc:
        raise VerdictError(f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict):
        raise VerdictError("the JSON is not an object")
    scores = {}
    for key in SCORES[task]:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 5:
            raise VerdictError(f"{key!r} must be a number from 0 to 5, got {value!r}")
        scores[key] = float(value)
    decision = str(data.get("decision", "")).strip().lower()
    if decision not in ("keep", "reject"):
        raise VerdictError(f"'decision' must be \"keep\" or \"reject\", got {data.get('decision')!r}")
    issues = data.get("issues", [])
    if not isinstance(issues, list) or not all(isinstance(i, str) for i in issues):
        raise VerdictError(f"'issues' must be a list of strings, got {issues!r}")
    return Verdict(task, scores, decision, issues)


def thresholds(cfg: JudgeConfig, task: Task) -> dict[str, float]:
    limits = cfg.iqa_min if task == "iqa" else cfg.iaa_min
    unknown = set(limits) - set(SCORES[task])
    if unknown:
        raise ValueError(f"validate.judge.{task}_min: unknown verdict score(s) {sorted(unknown)}; "
                         f"{task} verdicts have {list(SCORES[task])}")
    return limits


def rejection(verdict: Verdict, cfg: JudgeConfig) -> str | None:
    """None when the verdict keeps the record, else the reasons (decision, scores at or below threshold)."""
    reasons = [] if verdict.decision == "keep" else ["decision=reject"]
    reasons += [f"{key}={verdict.scores[key]:g} <= {limit:g}"
                for key, limit in thresholds(cfg, verdict.task).items() if verdict.scores[key] <= limit]
    if not reasons:
        return None
    issues = "; ".join(verdict.issues)
    return ", ".join(reasons) + (f" (issues: {issues})" if issues else "")


# -------------------------------------------------------------------------------------------- running
@dataclass
class JudgeOutcome:
    failures: dict[str, Failure]  # record id -> judge / judge_failure
    stats: dict


def judge_records(records: list[RationaleRecord], cfg: JudgeConfig, progress: bool = True) -> JudgeOutcome:
    """Ask the judge about every record; each ends kept, rejected (``judge``) or failed (``judge_failure``)."""
    from tatar.teacher.cache import cache_key
    from tatar.teacher.client import Endpoint, Job, Sampling, run_chat

    for task in SCORES:
        thresholds(cfg, task)  # a typo in params fails before any request is made
    sampling = Sampling(temperature=cfg.temperature, top_p=1.0, max_tokens=cfg.max_tokens)
    failures: dict[str, Failure] = {}
    jobs, tasks = [], {}
    for record in records:
        if not record.path.is_file():
            failures[record.id] = Failure("judge_failure", f"image not found: {record.path}")
            continue
        key = cache_key(kind="judge", model=cfg.model, prompt=system_prompt(record.task, cfg.prompt_version),
                        request=request_text(record), image=sha256_file(record.path),
                        temperature=sampling.temperature, max_tokens=sampling.max_tokens)
        jobs.append(Job(id=record.id, key=key, messages=lambda r=record: judge_messages(r, cfg), sampling=sampling))
        tasks[record.id] = record.task

    def check(job, text: str) -> tuple[bool, str]:
        try:
            parse_verdict(text, tasks[job.id])
        except VerdictError as exc:
            return False, str(exc)
        return True, ""

    run = run_chat(Endpoint.of(cfg), jobs, check, label="judge", progress=progress)
    for reply in run.replies:
        if reason := rejection(parse_verdict(reply.text, tasks[reply.id]), cfg):
            failures[reply.id] = Failure("judge", reason)
    for failed in run.failures:
        failures[failed.id] = Failure("judge_failure", failed.reason)
    return JudgeOutcome(failures, run.stats.as_dict())
