"""Readers of the published label files, one per dataset. Each turns a file into
``[(location, SourceRow | MalformedRow)]``; the declared scale and split selection are applied by the caller.

Layouts, as found in the datasets' own releases and the loaders of their users (public code index):

- KonIQ-10k (subpic/koniq ``metadata/``): ``koniq10k_scores_and_distributions.csv`` with ``image_name, c1..c5,
  c_total, MOS, SD, MOS_zscore`` (MOS on 1-5, MOS_zscore on 0-100, the scale of the KonIQ-10K benchmark labels),
  and ``koniq10k_distributions_sets.csv`` with the same columns plus ``set`` (training / validation / test).
- DeQA-Score metas: a JSON list of ``{"id", "image", "gt_score", "gt_score_norm", "level_probs", "std"}``;
  ``gt_score_norm = 4 (mos - min) / (max - min) + 1`` (a min-max rescale to 1-5).
- SPAQ (its annotations folder, read this way by e.g. g_iqa's ``SPAQFolder``):
  ``MOS and Image attribute scores.xlsx`` with ``Image name, MOS, Brightness, ...``; MOS on 0-100.
- KADID-10k (``dmos.csv``, as pyiqa's ``scripts/process_kadid10k.py`` reads it): ``dist_img, ref_img, dmos, var``;
  dmos on 1-5, higher is better despite its name.
- PIPAL (``Train_Label/*.txt``, pyiqa's PIPAL meta script): header-less ``dist_name,elo_score`` lines.
- AVA (``AVA.txt`` of the June 2012 release): header-less, space separated ``index image_id count_1 .. count_10
  tag_1 tag_2 challenge_id``; the label is the mean vote sum(k * count_k) / sum(count_k) on 1-10, image
  ``<image_id>.jpg``.
- TAD66K (``labels/merge/train.csv`` / ``test.csv``, read by column position in e.g. SSIRA's loader): the image
  name, then its score on 1-10; the official split is the file (point ``path`` at train.csv).
- FLICKR-AES (``FLICKR-AES_image_score.txt``): header-less ``<file name> <mean rating>`` (names may start with
  whitespace); the rating is the mean of five 1-5 worker scores. The declared scale is [0, 5] so score_100 is
  20 x rating, the same transform as the benchmark labels (rating / 5 on 0-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tatar.config import TrainSetConfig
from tatar.data.formats.artimuse import ATTRIBUTE_CONTAINER, parse_attributes, read_artimuse
from tatar.data.formats.tables import (
    MalformedRow,
    Rows,
    SourceError,
    load_table,
    read_plain_table,
    require_columns,
)

AVA_VOTES = 10
IMAGE_KEYS = ("image", "image_name", "Image name", "dist_img")


@dataclass(frozen=True)
class SourceRow:
    image: str
    score: object  # as in the source; checked against the declared scale later
    split: str | None = None  # the file's own split value, when it has one
    attributes: dict[str, str] | None = None
    scale: tuple[float, float] | None = None  # per-row scale (generic scale_columns)


Parsed = list[tuple[str, SourceRow | MalformedRow]]


def _column(cfg: TrainSetConfig, field: str, default: str) -> str:
    return getattr(cfg, field) if field in cfg.model_fields_set else default


def _label(cfg: TrainSetConfig, default: str) -> str:
    return _column(cfg, "score_column", default)


def _each(rows: Rows, parse) -> Parsed:
    """Apply ``parse`` to every row; a row it cannot parse becomes a MalformedRow at its location."""
    out: Parsed = []
    for where, row in rows:
        try:
            if isinstance(row, MalformedRow):
                raise row
            out.append((where, parse(row)))
        except MalformedRow as exc:
            if isinstance(row, dict):  # name the image in the quarantine record when the row has one
                exc.image = next((str(row[k]) for k in IMAGE_KEYS if row.get(k)), None)
            out.append((where, exc))
    return out


def _field(row: dict, key: str, what: str = "field"):
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MalformedRow(f"no {what} {key!r}")
    return value


def _object(row) -> dict:
    if not isinstance(row, dict):
        raise MalformedRow(f"row is a {type(row).__name__}, not an object")
    return row


def _table_rows(cfg: TrainSetConfig, path: Path, image: str, label: str, split: str | None = None) -> Parsed:
    rows = load_table(path)
    if path.suffix.lower() not in (".json", ".jsonl"):
        require_columns(path, rows, [image, label])

    split = _column(cfg, "split_column", split)

    def parse(row):
        row = _object(row)
        value = row.get(split) if split else None
        return SourceRow(str(_field(row, image, "image field")), _field(row, label, "label field"),
                         split=str(value).strip() if value is not None else None)

    return _each(rows, parse)


def read_koniq(cfg: TrainSetConfig, path: Path) -> Parsed:
    if path.suffix.lower() in (".json", ".jsonl"):  # a DeQA-Score meta
        return _table_rows(cfg, path, _column(cfg, "image_column", "image"), _label(cfg, "gt_score_norm"))
    return _table_rows(cfg, path, _column(cfg, "image_column", "image_name"), _label(cfg, "MOS_zscore"),
                       split=_column(cfg, "split_column", "set"))


def read_spaq(cfg: TrainSetConfig, path: Path) -> Parsed:
    return _table_rows(cfg, path, _column(cfg, "image_column", "Image name"), _label(cfg, "MOS"))


def read_kadid(cfg: TrainSetConfig, path: Path) -> Parsed:
    return _table_rows(cfg, path, _column(cfg, "image_column", "dist_img"), _label(cfg, "dmos"))


def read_tad66k(cfg: TrainSetConfig, path: Path) -> Parsed:
    # Peers read the release's csv by position (name, score), so its header names are not relied upon.
    header = next((list(row) for _, row in load_table(path) if isinstance(row, dict)), [])
    return _table_rows(cfg, path, _column(cfg, "image_column", header[0] if header else "image"),
                       _label(cfg, header[1] if len(header) > 1 else "score"))


def read_generic(cfg: TrainSetConfig, path: Path) -> Parsed:
    rows = load_table(path)
    if path.suffix.lower() not in (".json", ".jsonl"):
        require_columns(path, rows, [cfg.image_column, cfg.score_column, *(cfg.scale_columns or ())])

    def parse(row):
        row = _object(row)
        scale = None
        if cfg.scale_columns is not None:
            try:
                scale = (float(row[cfg.scale_columns[0]]), float(row[cfg.scale_columns[1]]))
            except (KeyError, TypeError, ValueError):
                raise MalformedRow(f"scale columns {cfg.scale_columns[0]!r}/{cfg.scale_columns[1]!r} missing or "
                                   f"invalid") from None
        split = row.get(cfg.split_column) if cfg.split_column else None
        return SourceRow(str(_field(row, cfg.image_column, "image field")),
                         _field(row, cfg.score_column, "label field"), scale=scale,
                         split=str(split).strip() if split is not None else None)

    return _each(rows, parse)


def _label_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise SourceError(f"{path}: no *.txt label files in this folder")
    return files


def read_pipal(cfg: TrainSetConfig, path: Path) -> Parsed:
    def parse(fields):
        if len(fields) != 2 or not fields[0]:
            raise MalformedRow(f"expected 'image,elo_score', found {len(fields)} field(s)")
        return SourceRow(fields[0], fields[1])

    return [item for f in _label_files(path) for item in _each(read_plain_table(f, ","), parse)]


def ava_mean(counts: list[str]) -> float:
    try:
        votes = [int(c) for c in counts]
    except ValueError as exc:
        raise MalformedRow(f"vote counts {' '.join(counts)!r} are not integers ({exc})") from None
    total = sum(votes)
    if total <= 0:
        raise MalformedRow("no votes")
    return sum((k + 1) * n for k, n in enumerate(votes)) / total


def read_ava(cfg: TrainSetConfig, path: Path) -> Parsed:
    def parse(fields):
        if len(fields) < 2 + AVA_VOTES:
            raise MalformedRow(f"expected 'index image_id' and {AVA_VOTES} vote counts, found {len(fields)} fields")
        return SourceRow(f"{fields[1]}.jpg", ava_mean(fields[2:2 + AVA_VOTES]))

    if path.suffix.lower() != ".txt":
        raise SourceError(f"{path}: the ava format reads AVA.txt (header-less, space separated); found "
                          f"{path.suffix or 'no suffix'}")
    return _each(read_plain_table(path), parse)


def read_flickr_aes(cfg: TrainSetConfig, path: Path) -> Parsed:
    def parse(fields):
        if len(fields) != 2:
            raise MalformedRow(f"expected '<file name> <score>', found {len(fields)} field(s)")
        return SourceRow(fields[0], fields[1])

    if path.suffix.lower() != ".txt":
        raise SourceError(f"{path}: the flickr-aes format reads FLICKR-AES_image_score.txt (header-less "
                          f"'<file name> <score>' lines); found {path.suffix or 'no suffix'}")
    return _each(read_plain_table(path), parse)


def read_artimuse_rows(cfg: TrainSetConfig, path: Path) -> Parsed:
    image_key, label = _column(cfg, "image_column", "image"), _label(cfg, "gt_score")

    def parse(row):
        row = _object(row)
        score_key = label if label in row or "score_column" in cfg.model_fields_set else "score"
        texts = row.get(ATTRIBUTE_CONTAINER)
        if not isinstance(texts, dict):
            raise MalformedRow(f"no {ATTRIBUTE_CONTAINER!r} object of aspect texts")
        return SourceRow(str(_field(row, image_key, "image field")), _field(row, score_key, "label field"),
                         attributes=parse_attributes(texts))

    return _each(read_artimuse(path, Path(cfg.text) if cfg.text else None), parse)
