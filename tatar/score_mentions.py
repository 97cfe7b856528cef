"""Numbers a rationale might state the score with, in digits or in words, and the 0-100 values they could mean.

Shared by the teacher's normaliser (drop or reject a rationale that states its score) and the validate stage's
score-leak rule. Numbers written as words ("seventy-two", "seven point two out of ten", "four and a half out of
five") are read as digits first, so they are caught like "72", "7.2/10" and "4.5/5".
"""

from __future__ import annotations

import re

UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
TEENS = {w: 10 + i for i, w in enumerate("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen "
                                         "nineteen".split())}
TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_UNIT = "|".join(UNITS)
_SMALL = rf"(?:(?:{'|'.join(TENS)})(?:[- ](?:{_UNIT}))?|{'|'.join(TEENS)}|{_UNIT})"
NUMBER_WORDS_RE = re.compile(
    rf"\b(?:(?:{_SMALL}|a|one)\s+hundred(?:\s+(?:and\s+)?{_SMALL})?|{_SMALL})"
    rf"(?:\s+point(?:\s+(?:{_UNIT}))+)?(?:\s+and\s+a\s+half)?\b",
    re.IGNORECASE,
)
# A number, optionally followed by a unit that rescales it: "72%", "7.2/10", "3.9 out of 5", "72 out of 100".
SCORE_MENTION_RE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)(?![\w])(?:\s*(%|percent\b)|\s*(?:/|out of)\s*(\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)


def _small(words: list[str]) -> float:
    total = 0.0
    for w in words:
        total += UNITS.get(w, TEENS.get(w, TENS.get(w, 0)))
    return total


def words_value(phrase: str) -> str:
    """The digits a number phrase stands for: "seventy-two" -> "72", "seven point two" -> "7.2"."""
    text = phrase.lower().replace("-", " ")
    half = text.endswith("and a half")
    text = text.removesuffix("and a half").strip()
    whole, _, decimals = text.partition(" point ")
    parts = whole.split()
    if "hundred" in parts:
        i = parts.index("hundred")
        head = parts[:i]
        value = 100 * (1 if head in (["a"], ["one"]) else _small(head))
        value += _small([w for w in parts[i + 1:] if w != "and"])
    else:
        value = _small(parts)
    digits = "".join(str(UNITS[w]) for w in decimals.split())
    number = float(f"{int(value)}.{digits}") if digits else value
    number += 0.5 if half else 0.0
    return f"{number:g}"


def with_digits(text: str) -> str:
    """``text`` with every number written in words replaced by its digits."""
    return _with_digits(text)[0]


def _with_digits(text: str) -> tuple[str, set[int]]:
    """``with_digits`` and the start offsets (in the new text) of the numbers that were words."""
    out, starts, last = [], set(), 0
    for m in NUMBER_WORDS_RE.finditer(text):
        out.append(text[last:m.start()])
        starts.add(sum(map(len, out)))
        out.append(words_value(m.group(0)))
        last = m.end()
    out.append(text[last:])
    return "".join(out), starts


def score_mentions(text: str) -> list[tuple[str, list[float]]]:
    """Every number in ``text`` (digits, or words read as digits) with the 0-100 values it could stand for (its
    obvious rescalings)."""
    found = []
    text, from_words = _with_digits(text)
    for m in SCORE_MENTION_RE.finditer(text):
        number, percent, denominator = m.group(1), m.group(2), m.group(3)
        n = float(number)
        if m.start() in from_words and not (percent or denominator or "." in number) and n < 10:
            continue  # "one of the", "the two figures": a small whole number in words is prose, not a score
        if percent:
            values = [n]
        elif denominator:
            d = float(denominator)
            values = [100 * n / d] if d else []
            if d == 5:  # a 1-5 scale (MOS) as well as 0-5
                values.append(25 * (n - 1))
        else:
            values = [n]
            if "." in number and n <= 1:
                values.append(100 * n)  # "0.72"
            if "." in number and n <= 10:
                values.append(10 * n)  # "7.2"
        found.append((m.group(0), values))
    return found


def states(text: str, score_100: float, tolerance: float = 0.5) -> str | None:
    """The first mention in ``text`` that could be ``score_100`` (within ``tolerance``), else None."""
    for mention, values in score_mentions(text):
        if any(abs(v - score_100) <= tolerance for v in values):
            return mention.strip()
    return None
