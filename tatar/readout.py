"""How a score is read from a generated answer (``eval.readout``, ``tatar score --readout``).

- ``greedy``: the number the model wrote (DESIGN.md's evaluation, and what the paper reports).
- ``expected``: the same greedy text, but the answer's tens digit is replaced by its expectation under the model's
  probabilities at that token, as Q-Align and DeQA-Score read a score from level-token probabilities. Greedy
  decoding picks the modal tens digit, so a weak model's answers fall into a handful of values and SRCC counts
  ties; the expectation keeps what the model knows between them. On the embedded default's validation folds it
  raised IQA SRCC on every run measured (NOTES.md, issue 16).

The tens token is the first token after the last ``<answer>``, when it is a bare digit and the greedy score lies in
[10, 100); otherwise (one-digit scores, 100, a tokenizer that merges digits, no answer) the greedy score stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Readout = Literal["greedy", "expected"]
ANSWER_TAG = "<answer>"


def digit_ids(tokenizer) -> list[int] | None:
    """Token ids of "0".."9" when each digit is a token of its own (Qwen2 tokenizers, the tiny one); else None."""
    ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    unknown = getattr(tokenizer, "unk_token_id", None)
    if any(i is None or i == unknown for i in ids) or len(set(ids)) != 10:
        return None
    return ids


def tens_position(pieces: Sequence[str]) -> int | None:
    """Index of the token that opens the last answer's number (whitespace-only tokens skipped), or None when no
    token starts right after the last ``<answer>`` or the one there is not a bare digit."""
    text = "".join(pieces)
    tag = text.rfind(ANSWER_TAG)
    if tag < 0:
        return None
    after, offset = tag + len(ANSWER_TAG), 0
    for i, piece in enumerate(pieces):
        start, offset = offset, offset + len(piece)
        if offset <= after or not piece.strip():
            continue
        if start < after:  # a token straddling the tag's end (">7"): no token of its own for the digit
            return None
        return i if len(piece) == 1 and piece in "0123456789" else None
    return None


def tens_index(tokenizer, token_ids: Sequence[int]) -> int | None:
    """``tens_position`` of generated token ids."""
    return tens_position([tokenizer.decode([t]) for t in token_ids])


def expected_score(score: float, tens_probs: Sequence[float] | None) -> float:
    """``score`` with its tens digit replaced by the expected tens digit (``tens_probs``: P(digit = 0..9), any
    scale). Scores outside [10, 100) and missing or empty probabilities leave ``score`` as it is."""
    total = sum(tens_probs) if tens_probs is not None else 0.0
    if not 10 <= score < 100 or total <= 0:
        return score
    expected_tens = sum(d * p for d, p in enumerate(tens_probs)) / total
    return score - 10 * (score // 10) + 10 * expected_tens
