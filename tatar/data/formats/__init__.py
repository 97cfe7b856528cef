"""Named training-set formats, one per dataset as it is published, and the one function that reads any of them.

Each format says which files it reads, the label it takes (column and declared scale), which split rows it keeps,
and which benchmark shares its label transform (``prepare`` warns when a train set's labels are on another
transform than its benchmark's test labels). Layout sources are cited in each reader's docstring; README
"Datasets" lists them for users.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tatar.config import TrainSetConfig
from tatar.data.checks import MALFORMED_ROW, QuarantineRecord, RawRow
from tatar.data.formats import published
from tatar.data.formats.paths import OUTSIDE_ROOT, OutsideRoot, resolve_image
from tatar.data.formats.published import SourceRow
from tatar.data.formats.tables import MalformedRow, SourceError
from tatar.data.registry import Scale
from tatar.records import Task


@dataclass(frozen=True)
class Format:
    name: str
    task: Task | None  # None: the source declares it (generic)
    files: str  # what it reads, for messages and README
    reader: Callable[[TrainSetConfig, Path], list[tuple[str, SourceRow | MalformedRow]]]
    label: str | None = None  # default label column (or how the label is computed)
    scales: dict[str, Scale] = field(default_factory=dict)  # label column -> declared scale
    benchmark: str | None = None  # the benchmark whose test labels use the same transform
    aligned: tuple[str, ...] = ()  # label columns on the benchmark's transform
    splits: tuple[str, ...] = ()  # split values kept by default when the file has a split column
    json_label: str | None = None  # default label column when the file is JSON (KonIQ: a DeQA-Score meta)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("koniq", "iqa", "official koniq10k_scores_and_distributions.csv / koniq10k_distributions_sets.csv, or a "
           "DeQA-Score meta JSON", published.read_koniq, "MOS_zscore",
           {"MOS_zscore": Scale(0, 100), "MOS": Scale(1, 5), "gt_score_norm": Scale(1, 5)},
           "KonIQ-10K", ("MOS_zscore",), ("training", "validation"), json_label="gt_score_norm"),
    Format("spaq", "iqa", "annotations/MOS and Image attribute scores.xlsx (or its CSV export)", published.read_spaq,
           "MOS", {"MOS": Scale(0, 100)}, "SPAQ", ("MOS",)),
    Format("kadid", "iqa", "dmos.csv", published.read_kadid, "dmos", {"dmos": Scale(1, 5)}, "KADID", ("dmos",)),
    Format("pipal", "iqa", "Train_Label/*.txt (a file or the folder)", published.read_pipal, "elo", {}, "PIPAL"),
    Format("ava", "iaa", "AVA.txt", published.read_ava, "mean of the ten vote counts", {"votes": Scale(1, 10)},
           "AVA", ("votes",)),
    Format("tad66k", "iaa", "labels/merge/train.csv", published.read_tad66k, "score", {"score": Scale(1, 10)},
           "TAD66K", ("score",)),
    Format("flickr-aes", "iaa", "FLICKR-AES_image_score.txt", published.read_flickr_aes, "score",
           {"score": Scale(0, 5)}, "FLICKR-AES", ("score",)),
    Format("artimuse", "iaa", "merged JSON, per-aspect conversation JSONL, or score JSON + conversation JSONL (text:)",
           published.read_artimuse_rows, "gt_score", {"gt_score": Scale(0, 10), "score": Scale(0, 10)},
           "ArtiMuse-10K", ("gt_score", "score")),
    Format("generic", None, "JSON, JSONL, CSV/TSV or XLSX with named columns", published.read_generic),
)}


@dataclass
class ImportedRows:
    rows: list[RawRow] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    # Rows left out by the split selection (not errors): split value -> count, for the report.
    not_selected: Counter = field(default_factory=Counter)


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise SourceError(f"unknown training-set format {name!r}; known: {', '.join(FORMATS)}") from None


def label_column(cfg: TrainSetConfig, fmt: Format) -> str:
    if "score_column" in cfg.model_fields_set or fmt.label is None:
        return cfg.score_column
    if fmt.json_label and Path(cfg.path).suffix.lower() in (".json", ".jsonl"):
        return fmt.json_label
    return fmt.label


def declared_scale(cfg: TrainSetConfig, fmt: Format, column: str) -> Scale | None:
    """The scale the user set, else the format's for that column; never guessed from the values."""
    if cfg.scale is not None:
        return Scale(cfg.scale[0], cfg.scale[1], cfg.lower_is_better)
    return fmt.scales.get(column)


def _where(cfg: TrainSetConfig) -> str:
    return f"data.train[{cfg.name}]"


def _task(cfg: TrainSetConfig, fmt: Format) -> Task:
    task = cfg.task or fmt.task
    if task is None:
        raise SourceError(f"{_where(cfg)}: the {fmt.name} format needs task: iqa or iaa")
    return task


def _scale_for(cfg: TrainSetConfig, fmt: Format) -> Scale | None:
    if fmt.name == "generic":
        scale = declared_scale(cfg, fmt, "")
        if scale is None and cfg.scale_columns is None:
            raise SourceError(f"{_where(cfg)}: declare the label scale with scale: [lo, hi] or "
                              f"scale_columns: [lo_col, hi_col]")
        return scale
    column = "votes" if fmt.name == "ava" else label_column(cfg, fmt)
    scale = declared_scale(cfg, fmt, column)
    if scale is None:
        raise SourceError(f"{_where(cfg)}: score_column {column!r} needs a declared scale [lo, hi]"
                          + (" (PIPAL's Elo scores have no fixed range)" if fmt.name == "pipal" else ""))
    return scale


def _row_scale(cfg: TrainSetConfig, scale: Scale | None, row: SourceRow) -> Scale:
    if scale is not None:
        return scale
    if row.scale is None:
        raise MalformedRow(f"scale columns {cfg.scale_columns[0]!r}/{cfg.scale_columns[1]!r} missing or invalid")
    return Scale(row.scale[0], row.scale[1], cfg.lower_is_better)


def import_train_set(cfg: TrainSetConfig) -> ImportedRows:
    """Candidate rows of one ``params.data.train`` entry (split=train); bad rows quarantined with their location."""
    fmt = get_format(cfg.format)
    task, scale = _task(cfg, fmt), _scale_for(cfg, fmt)
    path = Path(cfg.path)
    if not path.exists():
        raise SourceError(f"{path}: training set file not found ({_where(cfg)}, format {fmt.name} reads "
                          f"{fmt.files})")
    keep = set(cfg.splits) if cfg.splits is not None else set(fmt.splits)
    out = ImportedRows()
    for where, row in fmt.reader(cfg, path):
        image = row.image if isinstance(row, SourceRow) else getattr(row, "image", None) or "?"
        try:
            if isinstance(row, MalformedRow):
                raise row
            if row.split is not None and keep and row.split not in keep:
                out.not_selected[row.split] += 1
                continue
            root, rel = resolve_image(cfg.images, row.image, cfg.allow_outside_root)
            out.rows.append(RawRow(
                dataset=cfg.name, task=task, split="train", image=rel, root=root, score=row.score,
                scale=_row_scale(cfg, scale, row), where=where, attributes=row.attributes,
                id=f"{cfg.name}/{row.image.strip()}"))
        except OutsideRoot as exc:
            out.quarantined.append(QuarantineRecord(id=f"{cfg.name}/{image}", dataset=cfg.name, split="train",
                                                    reason=OUTSIDE_ROOT, detail=f"{exc} ({where})"))
        except MalformedRow as exc:
            out.quarantined.append(QuarantineRecord(id=f"{cfg.name}/{image}", dataset=cfg.name, split="train",
                                                    reason=MALFORMED_ROW, detail=f"{exc} ({where})"))
    return out


def transform_warning(cfg: TrainSetConfig) -> str | None:
    """Why this train set's labels may not be on its benchmark's transform (None when they are, or unknown)."""
    fmt = get_format(cfg.format)
    if fmt.benchmark is None or cfg.scale is not None or (cfg.benchmark or fmt.benchmark) != fmt.benchmark:
        return None
    column = "votes" if fmt.name == "ava" else label_column(cfg, fmt)
    if column in fmt.aligned:
        return None
    return (f"{_where(cfg)}: label {column!r} on {fmt.scales.get(column)} is not the transform of the {fmt.benchmark} "
            f"test labels ({', '.join(fmt.aligned) or 'unknown'}); the Gaussian reward compares absolute scores")
