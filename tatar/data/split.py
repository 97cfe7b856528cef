"""The held-out validation split that SFT and GRPO score during training (``data.validation``).

Drawn by ``prepare`` from the training records only (never the test benchmarks), seeded, and disjoint by image
hash: every record of an image (one sha256) lands on the same side, so a validation image is never trained on.

An image's side depends on nothing but the seed and its own sha256 (a keyed hash below ``fraction``), so adding or
removing other records never moves an image between train and validation: a re-run after a data change sends only
the new training records to the teacher. ``max_per_task`` caps the split (the images with the lowest keys stay);
when the cap binds, a new image can take the place of an old one.
"""

from __future__ import annotations

import hashlib

from tatar.records import ManifestRecord

TASKS = ("iqa", "iaa")


def image_key(sha256: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the image's hash and the seed."""
    digest = hashlib.sha256(f"tatar-validation:{seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validation_split(records: list[ManifestRecord], fraction: float, seed: int, max_per_task: int = 0
                     ) -> tuple[list[ManifestRecord], list[ManifestRecord]]:
    """(train, validation): the images whose key is below ``fraction`` (at most ``max_per_task`` per task when it
    is > 0), all their records together."""
    if fraction <= 0:
        return list(records), []
    held: set[str] = set()
    for task in TASKS:
        shas = sorted({r.sha256 for r in records if r.task == task and image_key(r.sha256, seed) < fraction},
                      key=lambda sha: image_key(sha, seed))
        held.update(shas[:max_per_task] if max_per_task > 0 else shas)
    return [r for r in records if r.sha256 not in held], [r for r in records if r.sha256 in held]
