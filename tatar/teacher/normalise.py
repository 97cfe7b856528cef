"""Turn a teacher's raw reply into the training target, or reject it with a reason (which triggers a re-ask).

Rules (DESIGN.md, Rationales): exactly one ``<think>`` and one ``<answer>`` block and nothing around them; no
contamination (code fences, role prefixes, chat or tool-call tokens); the score never inside ``<think>``: a
sentence that states a score ("I would rate it 72 out of 100") is dropped, and any other number left in the
rationale rejects it (it may be the score in disguise, and it also catches numbered steps). IQA keeps its first
two sentences and at most ``max`` words; IAA must fall within its word range. The answer is rewritten to the
ground truth, so the teacher's own number never matters.

A reasoning model's own reasoning before the requested blocks (``tatar.reasoning``) is set aside first; numbers
written as words count as numbers when they could be the score (``tatar.score_mentions``); a degenerate rationale
(a loop, a copied sentence: ``tatar.repetition``) is rejected as ``degenerate`` before any cut could hide it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tatar.parsing import ANSWER_RE, THINK_RE, format_score, word_count
from tatar.reasoning import requested
from tatar.records import Task
from tatar.repetition import degenerate
from tatar.score_mentions import score_mentions, states

CONTAMINATION = {
    "code fence": re.compile(r"```"),
    "role prefix": re.compile(r"^\s*(?:system|user|assistant)\s*:", re.IGNORECASE | re.MULTILINE),
    "chat or tool-call token": re.compile(r"<\|[^>]*\|>|</?tool_call>|</?function"),
}
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z])")
DIGIT = re.compile(r"\d")
SCORE_CUE = re.compile(r"\b(?:score[ds]?|scoring|rate|rated|rating|mos|points?)\b|/\s*\d|\bout of\b", re.IGNORECASE)


class Rejected(ValueError):
    """The reply breaks the output contract; ``str(exc)`` is the reason told to the teacher on a re-ask."""


@dataclass(frozen=True)
class Normalised:
    think: str
    answer: str  # the ground truth, NN.NN
    words: int
    dropped: int  # score-stating sentences removed from the rationale


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_SPLIT.split(text.strip()) if s]


def normalise(raw: str, task: Task, score_100: float, words: tuple[int, int]) -> Normalised:
    lo, hi = words
    found = sentences(" ".join(_think_block(requested(raw)).split()))
    if loop := degenerate(" ".join(found)):
        raise Rejected(f"degenerate: {loop}; write a fresh rationale without repeating yourself")
    kept = [s for s in found if not states_score(s)]
    if not kept:
        raise Rejected("<think> is empty (or only states the score)")
    if any(DIGIT.search(s) for s in kept):
        raise Rejected("a number inside <think>: never write the score, any number or numbered steps there")
    if mention := states(" ".join(kept), score_100):
        raise Rejected(f"the score inside <think> in words ({mention}): never write the score there")
    text = truncate(" ".join(kept[:2]), hi) if task == "iqa" else " ".join(kept)
    n = word_count(text)
    if n < lo:
        raise Rejected(f"the rationale has {n} words, fewer than {lo}")
    if n > hi:
        raise Rejected(f"the rationale has {n} words, more than {hi}")
    return Normalised(think=text, answer=format_score(score_100), words=n, dropped=len(found) - len(kept))


def states_score(sentence: str) -> bool:
    return bool((DIGIT.search(sentence) or score_mentions(sentence)) and SCORE_CUE.search(sentence))


def truncate(text: str, max_words: int) -> str:
    """At most ``max_words`` words, still ending like a sentence."""
    words = text.split()
    if len(words) <= max_words:
        return text
    cut = " ".join(words[:max_words]).rstrip(",;:-")
    return cut if cut[-1] in ".!?" else cut + "."


def _think_block(raw: str) -> str:
    for name, pattern in CONTAMINATION.items():
        if pattern.search(raw):
            raise Rejected(f"contamination ({name}): reply with the two tags only")
    counts = {tag: raw.count(tag) for tag in ("<think>", "</think>", "<answer>", "</answer>")}
    if any(c != 1 for c in counts.values()):
        wrong = ", ".join(f"{tag} x{c}" for tag, c in counts.items() if c != 1)
        raise Rejected(f"exactly one <think>...</think> and one <answer>...</answer> block are required ({wrong})")
    think, answer = THINK_RE.search(raw), ANSWER_RE.search(raw)
    if not think or not answer or answer.start() < think.end():
        raise Rejected("the <think> block must come first, then the <answer> block")
    outside = (raw[: think.start()] + raw[think.end() : answer.start()] + raw[answer.end() :]).strip()
    if outside:
        raise Rejected(f"text outside the tags: {outside[:40]!r}")
    return think.group(1)


def check(raw: str, task: Task, score_100: float, words: tuple[int, int]) -> tuple[bool, str]:
    """The runner's check: (accepted, reason)."""
    try:
        normalise(raw, task, score_100, words)
    except Rejected as exc:
        return False, str(exc)
    return True, ""
