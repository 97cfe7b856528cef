"""Token budgets of the corpus: every SFT target must fit the generation budgets of the stages after it.

GRPO cuts completions at ``grpo.max_completion_length`` tokens and evaluation at ``eval.max_new_tokens``; a model
taught a target longer than that never reaches ``</answer>`` there (format 0 and ranking 0 in GRPO, a parse
failure in evaluation). Words are no measure of it: the tiny tokenizer spends ~1.6 tokens a word, Qwen's ~1.3. So
``validate`` counts each target (``RationaleRecord.text``, what SFT trains on) with the base model's own tokenizer,
rejects the longer ones as ``over_budget`` and reports the per-task length distribution.

The tokenizer comes from ``data/models/base`` (stage ``base_model``): the built tiny model, or the ``base.json``
reference to a real one (a local folder or a cached hub id), so ``validate`` depends on that stage in dvc.yaml.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tatar.config import Params
from tatar.errors import TatarError
from tatar.records import RationaleRecord
from tatar.validation.report import TASKS, Rejection

CHECK = "over_budget"


class BudgetError(TatarError):
    """The base model's tokenizer cannot be loaded to count target lengths."""


@dataclass
class TokenBudget:
    """The largest target, in tokens, every later stage can generate, and the tokenizer that counts it."""

    tokens: int
    source: str  # the params it comes from, for messages
    base: str | Path  # the model folder whose tokenizer counts

    @classmethod
    def from_params(cls, params: Params, base: str | Path | None = None) -> TokenBudget:
        from tatar.modeling import BASE_DIR

        budgets = {"grpo.max_completion_length": params.grpo.max_completion_length,
                   "eval.max_new_tokens": params.eval.max_new_tokens}
        source = ", ".join(f"{key} {n}" for key, n in budgets.items())
        return cls(min(budgets.values()), source, base or BASE_DIR)

    @cached_property
    def tokenizer(self) -> Any:  # loaded on first count: a missing input upstream is reported before it
        return load_tokenizer(self.base)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model generates it (no BOS/EOS added)."""
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def load_tokenizer(base: str | Path):
    """The tokenizer of the base model in ``base`` (a model folder, or a folder whose ``base.json`` names one)."""
    from transformers import AutoTokenizer

    from tatar.modeling import REFERENCE_FILE, resolve_model

    if not (Path(base) / "config.json").is_file() and not (Path(base) / REFERENCE_FILE).is_file():
        raise BudgetError(f"{base}: no base model to count target tokens with (run stage base_model first)")
    location = resolve_model(base)
    try:
        return AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise BudgetError(f"{location}: cannot load the base model's tokenizer ({str(exc).splitlines()[0]})") from None


def length_stats(tasks: Sequence[str], lengths: Sequence[int], budget: int) -> dict[str, dict]:
    """Per task: records, median, p95 and max target tokens, the budget and how many exceed it."""
    stats = {}
    for task in TASKS:
        n = np.array([k for t, k in zip(tasks, lengths) if t == task])
        if len(n):
            stats[task] = {"records": len(n), "median": float(np.median(n)), "p95": float(np.percentile(n, 95)),
                           "max": int(n.max()), "budget": budget, "over_budget": int((n > budget).sum())}
    return stats


def split_by_budget(records: Sequence[RationaleRecord], budget: TokenBudget
                    ) -> tuple[list[RationaleRecord], list[Rejection], dict[str, dict]]:
    """Records whose target fits ``budget``, ``over_budget`` rejections for the others, and the length stats."""
    lengths = budget.count([r.text for r in records])
    kept, rejected = [], []
    for record, n in zip(records, lengths):
        if n > budget.tokens:
            rejected.append(Rejection(id=record.id, task=record.task, check=CHECK,
                                      detail=f"target is {n} tokens of the base model, over the {budget.tokens}-token "
                                             f"generation budget ({budget.source})"))
        else:
            kept.append(record)
    return kept, rejected, length_stats([r.task for r in records], lengths, budget.tokens)


def print_length_table(stats: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="validate: target length in base-model tokens", title_justify="left")
    for col in ("task", "records", "median", "p95", "max", "budget", "over budget"):
        table.add_column(col)
    for task, s in stats.items():
        table.add_row(task, str(s["records"]), f"{s['median']:.0f}", f"{s['p95']:.0f}", str(s["max"]),
                      str(s["budget"]), str(s["over_budget"]))
    Console(stderr=True).print(table)
