"""The held-out validation split that SFT and GRPO score during training (``data.validation``).

Drawn by ``prepare`` from the training records only (never the test benchmarks), seeded, and disjoint by image
hash: every record of an image (one sha256) lands on the same side, so a validation image is never trained on.
"""

from __future__ import annotations

import random
from collections import defaultdict

from tatar.errors import TatarError
from tatar.records import ManifestRecord

TASKS = ("iqa", "iaa")


class SplitError(TatarError):
    """data.validation asks for more held-out images than a task can spare."""


def validation_split(records: list[ManifestRecord], per_task: int, seed: int
                     ) -> tuple[list[ManifestRecord], list[ManifestRecord]]:
    """(train, validation): about ``per_task`` images per task moved to validation, whole sha256 groups at a time.

    The draw depends only on the seed and the set of image hashes, not on the records' order."""
    if per_task <= 0:
        return list(records), []
    rng = random.Random(seed)
    held: set[str] = set()
    for task in TASKS:
        groups: dict[str, int] = defaultdict(int)
        for r in records:
            if r.task == task and r.sha256 not in held:
                groups[r.sha256] += 1
        if not groups:
            continue
        if len(groups) <= per_task:
            raise SplitError(f"data.validation.per_task = {per_task}: the training set has only {len(groups)} "
                             f"distinct {task.upper()} images; lower it (or 0 for no validation split)")
        shas = sorted(groups)
        rng.shuffle(shas)
        taken = 0
        for sha in shas:
            if taken >= per_task:
                break
            held.add(sha)
            taken += groups[sha]
    return [r for r in records if r.sha256 not in held], [r for r in records if r.sha256 in held]
