"""Raw-data checks: every candidate row becomes a ManifestRecord or a QuarantineRecord saying why not.

Importers hand over ``RawRow``s without judging them (nothing is lost); this module alone decides: the label
must be a finite number inside the dataset's declared scale, the image must exist and decode, ids must be
unique, and no training image may also be a test image (same bytes).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from tatar.data.registry import Scale
from tatar.hashing import sha256_bytes
from tatar.records import ManifestRecord, Task

# Quarantine reasons.
MALFORMED_ROW = "malformed_row"  # the source row lacks the image or label field, or has wrong attributes
MISSING_IMAGE = "missing_image"
UNDECODABLE_IMAGE = "undecodable_image"
NON_NUMERIC_LABEL = "non_numeric_label"
NAN_LABEL = "nan_label"  # NaN or infinite
OUT_OF_SCALE_LABEL = "out_of_scale_label"
DUPLICATE_ID = "duplicate_id"
TRAIN_TEST_OVERLAP = "train_test_overlap"
CONFLICTING_DUPLICATE = "conflicting_duplicate"  # same image bytes under two training ids with different labels
OUTSIDE_ROOT = "outside_root"  # the image path leaves the source's declared images folder (tatar.data.formats.paths)


class QuarantineRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    dataset: str
    split: str
    reason: str
    detail: str


@dataclass
class RawRow:
    """A candidate manifest record as read from a source, label not yet checked."""

    dataset: str
    task: Task
    split: str
    image: str  # relative to root
    root: str
    score: object  # as in the source: may be "abc", NaN, None...
    scale: Scale
    where: str  # source location for messages, e.g. "meta.json[12]"
    attributes: dict[str, str] | None = None
    id: str = ""

    def __post_init__(self):
        self.id = self.id or f"{self.dataset}/{self.image}"

    @property
    def path(self) -> Path:
        return Path(self.root) / self.image

    def quarantine(self, reason: str, detail: str) -> QuarantineRecord:
        return QuarantineRecord(id=self.id, dataset=self.dataset, split=self.split, reason=reason,
                                detail=f"{detail} ({self.where})")


@dataclass
class CheckResult:
    records: list[ManifestRecord] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)

    def extend(self, other: CheckResult) -> None:
        self.records += other.records
        self.quarantined += other.quarantined


def check_label(value: object, scale: Scale) -> tuple[float | None, str | None, str]:
    """(label, None, "") when valid, else (None, reason, detail)."""
    if isinstance(value, bool) or value is None:
        return None, NON_NUMERIC_LABEL, f"label {value!r} is not a number"
    try:
        label = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None, NON_NUMERIC_LABEL, f"label {value!r} is not a number"
    if not math.isfinite(label):
        return None, NAN_LABEL, f"label {value!r} is not finite"
    if not scale.contains(label):
        return None, OUT_OF_SCALE_LABEL, f"label {label:g} outside the declared scale [{scale.lo:g}, {scale.hi:g}]"
    return label, None, ""


def inspect_image(path: Path) -> tuple[str | None, str | None, str]:
    """(sha256 of the bytes, None, "") for a readable image, else (None, reason, detail).

    The file is read once: its bytes are hashed and fully decoded (JPEGs in draft mode, which still reads the
    whole entropy-coded stream, so a truncated file fails) so a corrupt image fails here, not mid-training.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, MISSING_IMAGE, f"{path} does not exist"
    except OSError as exc:  # a folder, no permission...
        return None, MISSING_IMAGE, f"{path} cannot be read: {exc}"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (64, 64))
            im.load()
    except Exception as exc:  # PIL raises many types for broken files  # noqa: BLE001
        return None, UNDECODABLE_IMAGE, f"{path} does not decode as an image: {exc}"
    return sha256_bytes(data), None, ""


def check_rows(rows: list[RawRow], progress: str | None = None) -> CheckResult:
    """Per-row checks (label, then image); valid rows become ManifestRecords with the fresh sha256."""
    result = CheckResult()
    iterable = rows
    if progress and rows:
        from rich.progress import track

        iterable = track(rows, description=progress, transient=True)
    for row in iterable:
        label, reason, detail = check_label(row.score, row.scale)
        if reason is None:
            sha, reason, detail = inspect_image(row.path)
        if reason is not None:
            result.quarantined.append(row.quarantine(reason, detail))
            continue
        result.records.append(ManifestRecord(
            id=row.id, image=row.image, root=row.root, task=row.task, dataset=row.dataset, split=row.split,
            score=label, score_100=round(row.scale.to_100(label), 4), attributes=row.attributes, sha256=sha,
        ))
    return result


def _quarantine_record(rec: ManifestRecord, reason: str, detail: str) -> QuarantineRecord:
    return QuarantineRecord(id=rec.id, dataset=rec.dataset, split=rec.split, reason=reason, detail=detail)


def drop_duplicate_ids(records: list[ManifestRecord]) -> CheckResult:
    """Ids must be unique across all manifests. Exact repeats keep the first copy; copies that disagree on the
    label are all quarantined, since nothing says which one is right."""
    by_id: dict[str, list[ManifestRecord]] = defaultdict(list)
    for rec in records:
        by_id[rec.id].append(rec)
    result = CheckResult()
    for copies in by_id.values():
        if len(copies) == 1:
            result.records.append(copies[0])
            continue
        labels = sorted({c.score for c in copies})
        conflicting = len(labels) > 1 or len({c.sha256 for c in copies}) > 1
        keep = [] if conflicting else copies[:1]
        result.records += keep
        detail = (f"id appears {len(copies)} times"
                  + (f" with different labels/images (labels {', '.join(f'{s:g}' for s in labels)})"
                     if conflicting else "; the first copy is kept"))
        result.quarantined += [_quarantine_record(c, DUPLICATE_ID, detail) for c in copies[len(keep):]]
    return result


def drop_train_test_overlap(records: list[ManifestRecord]) -> CheckResult:
    """A training image whose bytes also appear in any test set leaks the test: quarantine the training copy."""
    test_by_sha: dict[str, ManifestRecord] = {}
    for rec in records:
        if rec.split == "test":
            test_by_sha.setdefault(rec.sha256, rec)
    result = CheckResult()
    for rec in records:
        twin = test_by_sha.get(rec.sha256) if rec.split == "train" else None
        if twin is None:
            result.records.append(rec)
        else:
            result.quarantined.append(_quarantine_record(
                rec, TRAIN_TEST_OVERLAP, f"same image bytes as test record {twin.id} ({twin.dataset})"))
    return result


def drop_conflicting_duplicates(records: list[ManifestRecord]) -> CheckResult:
    """The same image bytes under two training ids of one dataset with different labels: nothing says which label
    is right, so every copy is quarantined (equal labels are kept: a repeat, not a conflict)."""
    by_sha: dict[tuple[str, str], list[ManifestRecord]] = defaultdict(list)
    for rec in records:
        if rec.split == "train":
            by_sha[(rec.dataset, rec.sha256)].append(rec)
    conflicting = {}
    for copies in by_sha.values():
        labels = sorted({c.score_100 for c in copies})
        if len(labels) > 1:
            detail = (f"same image bytes as {', '.join(c.id for c in copies)} with different labels "
                      f"(score_100 {', '.join(f'{s:g}' for s in labels)})")
            conflicting.update({id(c): detail for c in copies})
    result = CheckResult()
    for rec in records:
        if id(rec) in conflicting:
            result.quarantined.append(_quarantine_record(rec, CONFLICTING_DUPLICATE, conflicting[id(rec)]))
        else:
            result.records.append(rec)
    return result


def run_checks(rows: list[RawRow]) -> CheckResult:
    """All raw-data checks in order: per row, duplicate ids, conflicting duplicate images, train/test overlap."""
    result = check_rows(rows, progress="checking images")
    deduped = drop_duplicate_ids(result.records)
    consistent = drop_conflicting_duplicates(deduped.records)
    clean = drop_train_test_overlap(consistent.records)
    return CheckResult(records=clean.records, quarantined=result.quarantined + deduped.quarantined
                       + consistent.quarantined + clean.quarantined)
