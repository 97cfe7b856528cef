"""Train/test hygiene that ``prepare`` reports: training images excluded for being test images, rows left out
by a source's split selection, and training labels on another transform than their benchmark's test labels."""

from __future__ import annotations

from collections import Counter

from tatar.config import DataConfig
from tatar.data.checks import TRAIN_TEST_OVERLAP, QuarantineRecord
from tatar.data.formats import transform_warning
from tatar.data.registry import get_benchmark
from tatar.records import ManifestRecord

# score_100 points by which a training set's label range may exceed its benchmark's before prepare warns.
RANGE_TOLERANCE = 10.0


def overlap_by_dataset(quarantined: list[QuarantineRecord]) -> dict[str, int]:
    return dict(sorted(Counter(q.dataset for q in quarantined if q.reason == TRAIN_TEST_OVERLAP).items()))


def label_warnings(cfg: DataConfig, records: list[ManifestRecord]) -> list[str]:
    """One line per training set whose labels may not share its benchmark's score_100 transform: a label column
    known to differ, or a score_100 range that leaves the test range by more than RANGE_TOLERANCE."""
    ranges: dict[tuple[str, str], list[float]] = {}
    for r in records:
        ranges.setdefault((r.dataset, r.split), []).append(r.score_100)
    warnings = []
    for train in cfg.train:
        known = transform_warning(train)
        if known:
            warnings.append(known)
        bench = train.benchmark or _format_benchmark(train.format)
        if bench is None:
            continue
        test = ranges.get((get_benchmark(bench).name, "test"))
        mine = ranges.get((train.name, "train"))
        if not test or not mine:
            continue
        lo, hi = min(mine), max(mine)
        if lo < min(test) - RANGE_TOLERANCE or hi > max(test) + RANGE_TOLERANCE:
            warnings.append(f"data.train[{train.name}]: training score_100 range {lo:.1f}-{hi:.1f} disagrees with "
                            f"the {bench} test range {min(test):.1f}-{max(test):.1f}; check the label column and "
                            f"declared scale (the Gaussian reward compares absolute scores)")
    return warnings


def _format_benchmark(name: str) -> str | None:
    from tatar.data.formats import FORMATS

    return FORMATS[name].benchmark
