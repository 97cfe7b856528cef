"""The output contract ``<think>...</think>\\n<answer>NN.NN</answer>`` and its strict parser.

One parser serves the teacher normaliser, validation, rewards and evaluation, so they can never disagree on
what counts as an answer. It never rescales: an IQA answer of ``3.0`` is 3.0 on 0-100, not 50. An answer off the
0-100 scale (``300``, ``-5``) or written with non-ASCII digits (``٧٢``, which ``float`` would accept) is no answer.
"""

from __future__ import annotations

import re

THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
NUMBER_RE = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")  # ASCII digits only: no exponent, inf, nan
SCALE = (0.0, 100.0)
WORD_RE = re.compile(r"\S+")


def format_score(score: float) -> str:
    return f"{score:.2f}"


def format_target(think: str | None, score: float) -> str:
    """The training target; ``think=None`` (or empty) gives the answer-only form used by thought dropout."""
    answer = f"<answer>{format_score(score)}</answer>"
    if not think:
        return answer
    return f"<think>{think.strip()}</think>\n{answer}"


def answer_text(text: str) -> str | None:
    """Content of the last ``<answer>`` block, or None."""
    found = ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


def parse_answer(text: str) -> float | None:
    """The single number on 0-100 inside the last ``<answer>``; None if absent, anything but one number, or off
    the scale (evaluation counts that as a parse failure and keeps the raw text)."""
    inner = answer_text(text)
    if inner is None or not NUMBER_RE.match(inner):
        return None
    value = float(inner)
    return value if SCALE[0] <= value <= SCALE[1] else None


def contract_answer(text: str) -> float | None:
    """The prediction of a completion that keeps the output contract, else None: exactly one ``<answer>`` holding
    one number on 0-100, at most one ``<think>`` block, closed before ``<answer>`` opens. What every GRPO reward
    reads, so a completion hedging with two answers or answering before it thinks earns nothing."""
    answers = list(ANSWER_RE.finditer(text))
    if len(answers) != 1 or text.count("<think>") > 1 or text.count("</think>") > 1:
        return None
    think_end = text.find("</think>")
    if think_end > answers[0].start() or ("<think>" in text) != (think_end >= 0):
        return None
    return parse_answer(text)


def think_text(text: str) -> str:
    """Content of the first ``<think>`` block ('' when there is none)."""
    m = THINK_RE.search(text)
    return m.group(1).strip() if m else ""


def word_count(text: str) -> int:
    return len(WORD_RE.findall(text))


def think_words(text: str) -> int:
    return word_count(think_text(text))
