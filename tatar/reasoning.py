"""A reasoning model's own reasoning, told apart from the rationale it was asked for.

The IAA teacher of the paper is a reasoning model (DeepSeek-R1-Distill-Qwen-32B). Its replies come in three shapes:

- served raw, it writes ``<think>its own reasoning</think>`` and then the requested
  ``<think>narrative</think><answer>NN.NN</answer>``;
- its chat template often opens the reasoning itself (R1's template ends the prompt with ``<think>\\n``), so the
  reply starts mid-reasoning and carries a lone ``</think>`` before the requested blocks;
- served by vLLM with a reasoning parser (``--reasoning-parser deepseek_r1``), the parser cuts at the first
  ``</think>``: the reasoning arrives in ``message.reasoning_content`` (``message.reasoning`` since vLLM 0.11) and
  only the requested blocks in ``content``. That case is the client's (it keeps the field apart).

``split_reasoning`` returns (reasoning, requested part); the reasoning never enters ``think``.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def split_reasoning(raw: str) -> tuple[str, str]:
    """(the model's own reasoning, the rest); ("", raw) when the reply carries no reasoning of its own."""
    opens, closes = raw.count(OPEN), raw.count(CLOSE)
    if closes == opens + 1 and raw.find(CLOSE) < _find(raw, OPEN):
        cut = raw.index(CLOSE)  # the template opened the reasoning: a lone </think> ends it
        return raw[:cut].strip(), raw[cut + len(CLOSE):].strip()
    if opens == closes >= 2 and raw.lstrip().startswith(OPEN):
        start = raw.index(OPEN)  # a reasoning block of its own, then the requested blocks
        cut = raw.index(CLOSE)
        if cut > start:
            return raw[start + len(OPEN):cut].strip(), raw[cut + len(CLOSE):].strip()
    return "", raw


def requested(raw: str) -> str:
    """The part of a reply that must follow the output contract."""
    return split_reasoning(raw)[1]


def _find(text: str, sub: str) -> int:
    i = text.find(sub)
    return len(text) if i < 0 else i
