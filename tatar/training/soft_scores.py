"""Soft labels for the score's tens digit (``sft.score_sigma``), after DeQA-Score's soft labels for level tokens.

With a one-hot target, answering 6 for an image of MOS 72 costs as much as answering 1: the loss knows nothing of
the order of the digits, and MOS 69.9 and 70.1 get unrelated targets. Here the tens digit of an answer learns the
mass that N(MOS, sigma^2) puts on each decade [10d, 10d + 10) instead, so neighbouring decades share the gradient,
and the true digit keeps the largest mass (greedy decoding still answers it). Every other token keeps its one-hot
target: the units after the tens digit would get a near-flat target at any sigma that spreads the decades.

Works with any tokenizer that spells the tens digit as a token of its own (Qwen2's splits digits one by one, the
tiny tokenizer's spellings ``tens`` and ``digits`` do too); answers below 10, of 100, or spelt otherwise keep their
one-hot target.
"""

from __future__ import annotations

import math
import re

ANSWER = re.compile(r"<answer>(\d+(?:\.\d+)?)</answer>")


def decade_masses(score: float, sigma: float) -> list[float]:
    """Mass of N(score, sigma^2) on each decade [10d, 10d + 10) for d = 1..9 (0 for d = 0: no answer starts with a
    tens digit 0), renormalised to sum to 1. A score on a boundary (70.00) sits a hair inside its own decade, so
    the true digit keeps the largest mass."""
    score = max(score, 10 * math.floor(score / 10) + 1e-3)
    cdf = [0.5 * (1 + math.erf((10 * d - score) / (sigma * math.sqrt(2)))) for d in range(1, 11)]
    mass = [0.0] + [b - a for a, b in zip(cdf, cdf[1:])]
    total = sum(mass)
    return [m / total for m in mass]


class SoftScoreLabels:
    """Finds each labelled answer's tens-digit token and gives it a distribution over the ten digit tokens."""

    def __init__(self, tokenizer, sigma: float):
        self.sigma = sigma
        self.digits = tokenizer.convert_tokens_to_ids([str(d) for d in range(10)])
        self.text = tokenizer.convert_ids_to_tokens

    def find(self, targets) -> list[tuple[int, int, list[float]]]:
        """(row, position, masses over digits 0..9) for every answer from 10 to 99.99 in ``targets`` (-100: none)."""
        found = []
        for row, ids in enumerate(targets.tolist()):
            positions = [t for t, i in enumerate(ids) if i != -100]
            pieces = self.text([ids[t] for t in positions])
            starts = [0]
            for piece in pieces:
                starts.append(starts[-1] + len(piece))
            text = "".join(pieces)
            for match in ANSWER.finditer(text):
                whole = match.group(1).split(".")[0]
                if len(whole) != 2 or match.start(1) not in starts:
                    continue
                first = starts.index(match.start(1))
                if pieces[first] == whole[0]:  # else the tens digit is not a token of its own in this spelling
                    found.append((row, positions[first], decade_masses(float(match.group(1)), self.sigma)))
        return found

    def loss(self, logits, targets, keep):
        """Summed cross-entropy over the ``keep`` positions (``logits`` holds their rows in order), soft at the
        tens digits."""
        import torch
        import torch.nn.functional as F

        logp = F.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(1, targets[keep].to(logits.device)[:, None])[:, 0]
        found = self.find(targets)
        if found:
            row_of = keep.flatten().cumsum(0).view_as(keep) - 1  # a kept position's row in ``logits``
            rows = torch.tensor([int(row_of[b, t]) for b, t, _ in found], device=logits.device)
            q = torch.tensor([m for _, _, m in found], device=logits.device, dtype=logp.dtype)
            digits = torch.tensor(self.digits, device=logits.device)
            nll = nll.index_put((rows,), -(q * logp[rows][:, digits]).sum(-1))
        return nll.sum()
