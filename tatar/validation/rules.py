"""Hard rules: per-record checks that need parsing or several fields, each with a named reason.

The column-shaped rules (non-null, value sets, ranges, answer format, think length, empty and duplicate
rationales) are the Great Expectations suite in ``expectations.py``; the rules here are the ones a column
expectation cannot say. Every rule returns ``None`` when the record passes, else a one-line detail naming
what is wrong, so ``rejected.jsonl`` explains itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tatar.config import ValidateConfig
from tatar.parsing import NUMBER_RE, format_score, parse_answer, think_text
from tatar.reasoning import requested
from tatar.records import RationaleRecord
from tatar.repetition import degenerate
from tatar.score_mentions import states
from tatar.validation.aspects import aspects_touched

CONTRACT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
CONTRACT_TAG_RE = re.compile(r"</?(?:think|answer)>")

# Named contamination patterns, most specific first so the detail says what leaked.
CONTAMINATION: dict[str, re.Pattern] = {
    "special token": re.compile(r"<\|[^<>|\n]{1,40}\|>"),
    "tool call": re.compile(r"</?\s*(?:tool_call|tool_response|function_call|tools?)\b[^>]*>|\"tool_calls\"\s*:",
                            re.IGNORECASE),
    "markup tag": re.compile(r"</?[A-Za-z_][\w:-]*(?:\s[^<>]*)?/?>"),
    "code fence": re.compile(r"```|~~~"),
    "role prefix": re.compile(r"^\s*(?:assistant|user|system|human|ai|model)\s*:", re.IGNORECASE | re.MULTILINE),
    "template leftover": re.compile(
        r"\{\{.*?\}\}|\{\s*[A-Za-z_]\w*\s*\}|\$\{[^}]*\}|\[(?:INSERT|PLACEHOLDER|TODO)[^\]]*\]", re.IGNORECASE
    ),
}

@dataclass(frozen=True)
class Failure:
    """Why a record was rejected: ``check`` is the rule (or expectation) name, ``detail`` the evidence."""

    check: str
    detail: str


def _tag_problem(text: str) -> str | None:
    """None when ``text`` holds exactly one think block followed by exactly one answer block."""
    counts = {tag: text.count(tag) for tag in CONTRACT_TAGS}
    wrong = [f"{tag} x{n}" for tag, n in counts.items() if n != 1]
    if wrong:
        return "expected one of each contract tag, found " + ", ".join(wrong)
    positions = [text.index(tag) for tag in CONTRACT_TAGS]
    if positions != sorted(positions):
        return "tags out of order (want <think>...</think> then <answer>...</answer>)"
    return None


def check_structure(record: RationaleRecord, cfg: ValidateConfig) -> str | None:
    """The teacher's raw text (after a reasoning model's own reasoning) and the SFT target both follow the
    contract, and the target parses back."""
    if problem := _tag_problem(requested(record.raw)):
        return f"raw: {problem}"
    target = f"<think>{record.think.strip()}</think>\n<answer>{record.answer}</answer>"
    if problem := _tag_problem(target):
        return f"target: {problem}"
    if think_text(target) != record.think.strip():
        return "target: think does not parse back from the training target"
    return None


def check_answer(record: RationaleRecord, cfg: ValidateConfig) -> str | None:
    """The raw answer is one number; the normalised answer is one number equal to the 0-100 ground truth."""
    if parse_answer(requested(record.raw)) is None:
        return "raw <answer> is not a single number"
    if not NUMBER_RE.match(record.answer.strip()):
        return f"answer {record.answer!r} is not a single number"
    if format_score(float(record.answer)) != format_score(record.score_100):
        return f"answer {record.answer} != ground truth {format_score(record.score_100)}"
    return None


def contamination(text: str) -> str | None:
    """The name and snippet of the first contamination pattern found in ``text``, else None."""
    for name, pattern in CONTAMINATION.items():
        if m := pattern.search(text):
            return f"{name} {m.group(0).strip()[:40]!r}"
    return None


def check_contamination(record: RationaleRecord, cfg: ValidateConfig) -> str | None:
    """No chat-template, tool-call, markup or code debris in the rationale, nor around it in the raw text."""
    if found := contamination(record.think):
        return f"think: {found}"
    if found := contamination(CONTRACT_TAG_RE.sub(" ", requested(record.raw))):
        return f"raw: {found}"
    return None


def check_score_leak(record: RationaleRecord, cfg: ValidateConfig) -> str | None:
    """The rationale must explain the score, not state it: a model trained on it would learn to copy a number."""
    if mention := states(record.think, record.score_100, cfg.score_leak_tolerance):
        return f"think states the ground truth {format_score(record.score_100)} as {mention!r}"
    return None


def check_degenerate(record: RationaleRecord, cfg: ValidateConfig) -> str | None:
    """A decoding loop (a word or phrase repeated, a sentence copied) is not a rationale, however it was cut."""
    return degenerate(record.think)


def check_attribute_coverage(record: RationaleRecord, cfg: ValidateConfig) -> str | None:
    """IAA narratives deliberate over at least ``min_attributes`` of the eight aesthetic aspects."""
    if record.task != "iaa":
        return None
    touched = aspects_touched(record.think)
    if len(touched) < cfg.min_attributes:
        return f"touches {len(touched)}/8 aspects ({', '.join(touched) or 'none'}), need {cfg.min_attributes}"
    return None


Rule = Callable[[RationaleRecord, ValidateConfig], "str | None"]

# Order matters: a record is rejected for the first rule it fails.
RULES: dict[str, Rule] = {
    "structure": check_structure,
    "answer": check_answer,
    "contamination": check_contamination,
    "score_leak": check_score_leak,
    "degenerate": check_degenerate,
    "attribute_coverage": check_attribute_coverage,
}


def first_failure(record: RationaleRecord, cfg: ValidateConfig) -> Failure | None:
    for name, rule in RULES.items():
        if (detail := rule(record, cfg)) is not None:
            return Failure(name, detail)
    return None
