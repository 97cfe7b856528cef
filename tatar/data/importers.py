"""Importers: read datasets from disk into candidate rows (checked by tatar.data.checks), never crashing on a bad
row: a row without an image or label field is quarantined as ``malformed_row`` with its location.

Training sets (``params.data.train``, one ``TrainSetConfig`` each):

- ``koniq``: DeQA-Score meta JSON, a list of {"image", "gt_score", "gt_score_norm", "std", ...}. The label is
  ``gt_score_norm`` on [1, 5] (DeQA rescales each dataset's MOS linearly to 1-5), unless ``score_column`` and
  ``scale`` name another column and its declared scale (e.g. ``gt_score`` on [0, 100]).
- ``artimuse``: ArtiMuse-10K train, JSON list or JSONL; label ``score`` (or gt_score / overall_score /
  total_score / aesthetic_score) on [0, 10] unless ``scale`` says otherwise; eight attribute texts, either
  top-level or nested under "attributes" / "aspects" / "annotations" / "analysis", keyed by any spelling whose
  first word names the attribute (see ``attribute_key``), e.g. "Composition & Design", "visual_elements",
  "Emotion & Viewer Response", "Comprehensive Evaluation"; a value may be text or {"text"|"comment"|...: text}.
- ``generic``: JSON (a list of objects, or an object holding one list), JSONL or CSV/TSV with named
  ``image_column`` and ``score_column``; the scale is ``scale: [lo, hi]`` or per-row ``scale_columns: [lo, hi]``,
  ``lower_is_better`` flips DMOS-like labels; ``task`` is required.

Benchmarks: ``tatar data import NAME --images DIR`` checks DIR against the shipped evaluation manifest.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tatar.config import TrainSetConfig
from tatar.data.checks import MALFORMED_ROW, CheckResult, QuarantineRecord, RawRow, check_rows
from tatar.data.registry import DEQA_NORM_SCALE, Benchmark, Scale, get_benchmark, reference_manifest
from tatar.errors import ConfigValueError, InvalidDataError, MissingInputError
from tatar.records import ATTRIBUTES, ManifestRecord, read_records, write_jsonl

ARTIMUSE_SCORE_KEYS = ("score", "gt_score", "overall_score", "total_score", "aesthetic_score")
ARTIMUSE_IMAGE_KEYS = ("image", "image_path", "img", "file_name", "filename", "path")
ATTRIBUTE_CONTAINERS = ("attributes", "aspects", "annotations", "analysis")
ATTRIBUTE_TEXT_KEYS = ("text", "comment", "description", "analysis", "content")
# First word of a normalised source key -> attribute (ArtiMuse's long names and our short ones).
_ATTRIBUTE_WORDS = {
    "visual": "visual_elements", "composition": "composition", "gestalt": "gestalt",
    "technical": "technical_execution", "theme": "theme", "emotion": "emotion", "emotional": "emotion",
    "originality": "originality", "creativity": "originality", "overall": "overall", "comprehensive": "overall",
}


class MalformedRow(ValueError):
    """A source row that cannot become a candidate record (the message says why)."""


@dataclass
class ImportedRows:
    rows: list[RawRow] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ tables
def load_table(path: Path) -> list[tuple[str, object]]:
    """[(location, row)] from JSON, JSONL or CSV/TSV; an unparsable JSONL line comes back as a MalformedRow."""
    if path.is_dir():
        raise ConfigValueError(f"{path}: is a folder; data.train[].path names the metadata file (its images go "
                               "in data.train[].images)")
    if not path.is_file():
        raise MissingInputError(f"{path}: training set file not found (check data.train[].path)")
    text = _read_utf8(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        return [(f"{path.name}:{i + 2}", row) for i, row in enumerate(reader)]  # line 1 is the header
    if suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    rows.append((f"{path.name}:{i + 1}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    rows.append((f"{path.name}:{i + 1}", MalformedRow(f"not valid JSON: {exc.msg}")))
        return rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidDataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise InvalidDataError(f"{path}: expected a JSON list of rows or an object holding exactly one list")
            data = lists[0]
        if not isinstance(data, list):
            raise InvalidDataError(f"{path}: expected a JSON list of rows")
        return [(f"{path.name}[{i}]", row) for i, row in enumerate(data)]
    raise ConfigValueError(f"{path}: unsupported format {suffix!r} (use .json, .jsonl, .csv or .tsv)")


def _read_utf8(path: Path) -> str:
    """The file's text; a UTF-8 BOM (spreadsheet exports) is dropped, other encodings are a clear error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDataError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None


def _get(row: dict, keys: tuple[str, ...], what: str):
    for key in keys:
        if key in row and row[key] not in (None, ""):
            return row[key]
    raise MalformedRow(f"no {what} field (looked for {', '.join(map(repr, keys))})")


# -------------------------------------------------------------------------------------- attributes
def attribute_key(source_key: str) -> str | None:
    """Map a source key such as "Composition & Design" or "visual_elements" to an ATTRIBUTES name."""
    words = re.sub(r"[^a-z0-9]+", " ", source_key.lower()).split()
    return _ATTRIBUTE_WORDS.get(words[0]) if words else None


def _text(value) -> str | None:
    if isinstance(value, dict):
        value = next((value[k] for k in ATTRIBUTE_TEXT_KEYS if isinstance(value.get(k), str)), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_attributes(row: dict) -> dict[str, str]:
    """All eight attribute texts of an ArtiMuse row, in ATTRIBUTES order; MalformedRow naming any missing."""
    source = next((row[k] for k in ATTRIBUTE_CONTAINERS if isinstance(row.get(k), dict)), row)
    found: dict[str, str] = {}
    for key, value in source.items():
        name, text = attribute_key(str(key)), _text(value)
        if name and text and name not in found:
            found[name] = text
    missing = [a for a in ATTRIBUTES if a not in found]
    if missing:
        raise MalformedRow(f"missing attribute texts: {', '.join(missing)}")
    return {a: found[a] for a in ATTRIBUTES}


# ------------------------------------------------------------------------------------ training sets
@dataclass(frozen=True)
class _Layout:
    """How one training-set format reads a row."""

    task: str
    image_keys: tuple[str, ...]
    score_keys: tuple[str, ...]
    scale: Scale | None  # None: per-row scale_columns
    with_attributes: bool = False


def _declared_scale(cfg: TrainSetConfig, default: Scale | None) -> Scale | None:
    if cfg.scale is not None:
        return Scale(cfg.scale[0], cfg.scale[1], cfg.lower_is_better)
    return default


def _layout(cfg: TrainSetConfig) -> _Layout:
    """Resolve the format's defaults against what the user set explicitly (a scale is never guessed)."""
    explicit = cfg.model_fields_set
    where = f"data.train[{cfg.name}]"
    if cfg.format == "koniq":
        key = cfg.score_column if "score_column" in explicit else "gt_score_norm"
        scale = _declared_scale(cfg, DEQA_NORM_SCALE if key == "gt_score_norm" else None)
        if scale is None:
            raise ConfigValueError(f"{where}: score_column {key!r} needs a declared scale [lo, hi]")
        return _Layout(cfg.task or "iqa", (cfg.image_column,), (key,), scale)
    if cfg.format == "artimuse":
        keys = (cfg.score_column,) if "score_column" in explicit else ARTIMUSE_SCORE_KEYS
        images = (cfg.image_column,) if "image_column" in explicit else ARTIMUSE_IMAGE_KEYS
        scale = _declared_scale(cfg, get_benchmark("ArtiMuse-10K").scale)
        return _Layout(cfg.task or "iaa", images, keys, scale, with_attributes=True)
    if cfg.task is None:
        raise ConfigValueError(f"{where}: the generic format needs task: iqa or iaa")
    scale = _declared_scale(cfg, None)
    if scale is None and cfg.scale_columns is None:
        raise ConfigValueError(f"{where}: declare the label scale with scale: [lo, hi] or "
                               "scale_columns: [lo_col, hi_col]")
    return _Layout(cfg.task, (cfg.image_column,), (cfg.score_column,), scale)


def _row_scale(cfg: TrainSetConfig, layout: _Layout, row: dict) -> Scale:
    if layout.scale is not None:
        return layout.scale
    lo_key, hi_key = cfg.scale_columns
    try:
        return Scale(float(row[lo_key]), float(row[hi_key]), cfg.lower_is_better)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRow(f"scale columns {lo_key!r}/{hi_key!r} missing or invalid: {exc}") from None


def import_train_set(cfg: TrainSetConfig) -> ImportedRows:
    """Candidate rows of one ``params.data.train`` entry (split=train, root=its image folder)."""
    layout = _layout(cfg)
    out = ImportedRows()
    for where, row in load_table(Path(cfg.path)):
        try:
            if isinstance(row, MalformedRow):
                raise row
            if not isinstance(row, dict):
                raise MalformedRow(f"row is a {type(row).__name__}, not an object")
            image = str(_get(row, layout.image_keys, "image"))
            score_key = next((k for k in layout.score_keys if k in row), None)
            if score_key is None:
                raise MalformedRow(f"no label field (looked for {', '.join(map(repr, layout.score_keys))})")
            score = row[score_key]
            out.rows.append(RawRow(
                dataset=cfg.name, task=layout.task, split="train", image=image, root=cfg.images,
                score=score, scale=_row_scale(cfg, layout, row), where=where,
                attributes=parse_attributes(row) if layout.with_attributes else None,
            ))
        except MalformedRow as exc:
            image = next((row[k] for k in layout.image_keys if row.get(k)), "?") if isinstance(row, dict) else "?"
            out.quarantined.append(QuarantineRecord(id=f"{cfg.name}/{image}", dataset=cfg.name, split="train",
                                                    reason=MALFORMED_ROW, detail=f"{exc} ({where})"))
    return out


# --------------------------------------------------------------------------------------- benchmarks
def portable_root(folder: Path) -> str:
    """A folder inside the project stays relative (portable with the repo); any other becomes absolute."""
    resolved = folder.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def benchmark_rows(bench: Benchmark, root: str) -> list[RawRow]:
    """Candidate test rows from the shipped evaluation manifest, images under ``root``."""
    return [RawRow(dataset=bench.name, task=bench.task, split="test", image=item["image"], root=root,
                   score=item.get("gt_score"), scale=bench.scale, where=f"{bench.reference_file}[{i}]")
            for i, item in enumerate(reference_manifest(bench.name))]


def imported_benchmark_rows(name: str, project: Path = Path(".")) -> list[RawRow]:
    """Rows of an imported benchmark manifest (re-checked by prepare: images may have moved since import)."""
    bench = get_benchmark(name)
    path = project / bench.imported_manifest
    if not path.exists():
        raise MissingInputError(f"data.benchmarks lists {bench.name} but {path} does not exist: "
                                f"run `tatar data import {bench.name} --images DIR` first")
    rows = []
    for i, rec in enumerate(read_records(path, ManifestRecord)):  # a bad line names the file and line
        rows.append(RawRow(dataset=bench.name, task=bench.task, split="test", image=rec.image, root=rec.root,
                           score=rec.score, scale=bench.scale, where=f"{path}:{i + 1}", id=rec.id))
    return rows


def import_benchmark(name: str, images_dir: Path) -> CheckResult:
    bench = get_benchmark(name)
    return check_rows(benchmark_rows(bench, portable_root(images_dir)), progress=f"checking {bench.name} images")


def _notify_data_changed(name: str, path: Path) -> None:
    """Tell a served pipeline (tatar serve) that a dataset changed; optional, never fatal."""
    try:
        from tatar.events import emit_data_changed
    except ImportError:
        return
    try:
        emit_data_changed(name, path)
    except Exception as exc:  # noqa: BLE001 - the manifest is written; a missing event server is not an error
        print(f"note: could not emit the data-changed event: {exc}")


def import_benchmark_cli(name: str, images_dir: Path, out: Path | None = None, allow_missing: bool = False) -> int:
    """`tatar data import NAME --images DIR`: exit code 0 when the manifest was written, 1 on bad images, 2 on
    bad arguments."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # no hard wraps: messages stay greppable
    try:
        bench = get_benchmark(name)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        return 2
    if not images_dir.is_dir():
        console.print(f"[red]{images_dir}: not a folder (pass the folder holding the {bench.name} images)[/red]")
        return 2
    result = import_benchmark(bench.name, images_dir)
    total = len(result.records) + len(result.quarantined)
    if result.quarantined:
        by_reason: dict[str, list[QuarantineRecord]] = {}
        for q in result.quarantined:
            by_reason.setdefault(q.reason, []).append(q)
        for reason, items in sorted(by_reason.items()):
            names = ", ".join(q.id.split("/", 1)[1] for q in items[:5])
            console.print(f"[yellow]{len(items)} of {total} images: {reason} (first: {names}"
                          f"{', ...' if len(items) > 5 else ''})[/yellow]")
        if not allow_missing:
            console.print(f"[red]no manifest written; fix {images_dir} or pass --allow-missing to write the "
                          f"{len(result.records)} usable records[/red]")
            return 1
    out = out or bench.imported_manifest
    write_jsonl(out, result.records)
    console.print(f"[green]{bench.name}: {len(result.records)} of {total} records -> {out}[/green]"
                  f" (add {bench.name!r} to data.benchmarks in params.yaml to evaluate on it)")
    _notify_data_changed(bench.name, out)
    return 0
