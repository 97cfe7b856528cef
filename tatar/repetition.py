"""Degenerate text: a decoding loop rather than a rationale.

Sampling can collapse into repetition ("very very very ..."), a phrase looped ("the image is the image is ..."),
or a sentence copied several times. Cutting such a reply to the word limit still leaves a loop, so the teacher
stage re-asks it (then fails it as ``degenerate``) and the validate stage rejects it in corpora made elsewhere.
"""

from __future__ import annotations

import re
from collections import Counter

WORD_RE = re.compile(r"[a-z0-9']+")
SENTENCE_RE = re.compile(r"[^.!?]+[.!?]?")
MAX_NGRAM = 6  # phrases up to this many words are looked for in loops
MIN_LOOPS = 3  # the same word or phrase three times in a row ("very very very") is a loop
MIN_SENTENCE_WORDS = 5  # shorter sentences may repeat legitimately ("It is sharp.")
MIN_DIVERSITY_WORDS = 40  # distinct/total words is only meaningful on longer texts
MIN_DIVERSITY = 0.25  # English prose of 40-450 words keeps about 0.4-0.7 of its words distinct


def degenerate(text: str) -> str | None:
    """Why ``text`` is degenerate, or None."""
    words = WORD_RE.findall(text.lower())
    if loop := _loop(words):
        return loop
    sentences = Counter(" ".join(WORD_RE.findall(s.lower())) for s in SENTENCE_RE.findall(text))
    copied = [(s, n) for s, n in sentences.items() if n > 1 and len(s.split()) >= MIN_SENTENCE_WORDS]
    if copied:
        sentence, n = copied[0]
        return f"a sentence copied {n} times: {_quote(sentence)}"
    if len(words) >= MIN_DIVERSITY_WORDS and len(set(words)) / len(words) < MIN_DIVERSITY:
        return f"only {len(set(words))} distinct words in {len(words)}"
    return None


def _loop(words: list[str]) -> str | None:
    for n in range(1, MAX_NGRAM + 1):
        for start in range(len(words) - n * MIN_LOOPS + 1):
            phrase = words[start:start + n]
            if all(words[start + k * n:start + (k + 1) * n] == phrase for k in range(1, MIN_LOOPS)):
                return f"{' '.join(phrase)!r} repeated {_run(words, start, n)} times in a row"
    return None


def _run(words: list[str], start: int, n: int) -> int:
    k = 1
    while words[start + k * n:start + (k + 1) * n] == words[start:start + n]:
        k += 1
    return k


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
