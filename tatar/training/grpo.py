"""Stage grpo: TRL's GRPOTrainer from the SFT checkpoint with task-routed asymmetric rewards.

IQA rows are rewarded by format + adaptive Gaussian score, IAA rows by format + Thurstone completion ranking
(``grpo.rewards_iqa`` / ``grpo.rewards_iaa``). The ranking compares the IAA images of one generation batch, so the
train order is built here: the tasks are interleaved in blocks of ``prompts_per_generation`` images, each block
holding at least two IAA images, and TRL's sampler keeps that order (``shuffle_dataset=False``) while repeating
each prompt G times.

    tatar stage grpo                                                   # one process (CPU default)
    accelerate launch --config_file configs/accelerate/zero3.yaml -m tatar.cli stage grpo   # GPUs
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

from tatar.config import GRPOConfig, Params
from tatar.prompts import prompt_messages
from tatar.records import ManifestRecord, read_records

MANIFEST = Path("data/manifests/train.jsonl")
SFT_DIR = Path("data/models/sft")
OUT_DIR = Path("data/models/grpo")
WORK_DIR = Path(".tatar/runs/grpo")  # trainer checkpoints for resume; survives DVC deleting OUT_DIR


def mixed_order(tasks: Sequence[str], block: int, seed: int = 0, min_iaa: int = 2) -> list[int]:
    """Indices into ``tasks`` in blocks of ``block`` that each mix the tasks in their overall proportion with at
    least ``min_iaa`` IAA rows (when there are IAA rows at all).

    Each task is drawn from its own shuffled stream; the stream of the smaller share wraps around, so every
    record appears at least once and the minority task repeats a few records rather than leaving a block
    without a ranking signal."""
    rng = random.Random(seed)
    by_task = {t: [i for i, x in enumerate(tasks) if x == t] for t in ("iqa", "iaa")}
    n_iqa, n_iaa = len(by_task["iqa"]), len(by_task["iaa"])
    if n_iaa == 0 or n_iqa == 0:  # one task only: plain shuffle in whole blocks
        order = list(range(len(tasks)))
        rng.shuffle(order)
        if n_iaa and block < min_iaa:
            raise ValueError(f"grpo.prompts_per_generation={block}: the ranking needs >= {min_iaa} IAA images per "
                             "generation batch")
        return order[: len(order) // block * block] or order
    if block < min_iaa + 1:
        raise ValueError(f"grpo.prompts_per_generation={block}: a generation batch must hold >= {min_iaa} IAA "
                         f"images plus IQA images; use >= {min_iaa + 1}")
    per_block_iaa = min(max(round(block * n_iaa / (n_iqa + n_iaa)), min_iaa), block - 1)
    quota = {"iaa": per_block_iaa, "iqa": block - per_block_iaa}
    n_blocks = max(math.ceil(len(by_task[t]) / quota[t]) for t in quota)
    streams = {}
    for t, ids in by_task.items():
        rng.shuffle(ids)
        need = n_blocks * quota[t]
        streams[t] = (ids * math.ceil(need / len(ids)))[:need]
    order = []
    for b in range(n_blocks):
        chunk = [i for t in quota for i in streams[t][b * quota[t]:(b + 1) * quota[t]]]
        rng.shuffle(chunk)
        order += chunk
    return order


def build_dataset(records: Sequence[ManifestRecord], order: Sequence[int]):
    """TRL prompt dataset: conversational ``prompt`` + ``image``, and the columns the rewards read
    (``task``, ``score_100``, ``id``)."""
    from datasets import Dataset, Image

    for r in records:
        if not r.path.is_file():
            raise FileNotFoundError(f"{MANIFEST}: record {r.id}: image {r.path} not found (re-run stage prepare)")
    rows = [records[i] for i in order]
    data = {
        "prompt": [prompt_messages(r.task) for r in rows],
        "image": [str(r.path) for r in rows],
        "task": [r.task for r in rows],
        "score_100": [float(r.score_100) for r in rows],
        "id": [r.id for r in rows],
    }
    return Dataset.from_dict(data).cast_column("image", Image())


def generation_batch_size(cfg: GRPOConfig, num_processes: int) -> int:
    """Completions per generation batch (all processes), checked against TRL's divisibility rules."""
    size = cfg.prompts_per_generation * cfg.num_generations
    step = cfg.per_device_batch_size * num_processes
    if size % step:
        raise ValueError(f"grpo: prompts_per_generation x num_generations = {size} completions must be a multiple of "
                         f"per_device_batch_size x processes = {step}")
    return size
