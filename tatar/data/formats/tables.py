"""Label files as datasets publish them, read into ``[(location, row)]`` without judging the rows.

A file that cannot be read at all (missing, unsupported type, no such columns) raises ``SourceError``: one line
naming the file, what was expected and what was found. A single row that cannot be parsed comes back as a
``MalformedRow`` at its location, so the importer quarantines it and carries on.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tatar.errors import DataError, UsageError

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".xlsx")


class SourceError(DataError, ValueError):
    """A training-set file that cannot be read as declared (the message names the file)."""


class SourceConfigError(UsageError, SourceError):
    """``data.train[]`` points at something no format reads (a folder, an unsupported file type): fix params."""


class MalformedRow(ValueError):
    """A source row that cannot become a candidate record (the message says why)."""


Rows = list[tuple[str, object]]  # (location such as "dmos.csv:12", a dict | list | MalformedRow)


def require_file(path: Path, what: str = "training set file") -> Path:
    if path.is_dir():
        raise SourceConfigError(f"{path}: is a folder; data.train[].path names the metadata file (its images go in "
                                "data.train[].images)")
    if not path.is_file():
        raise SourceError(f"{path}: {what} not found")
    return path


def read_text(path: Path) -> str:
    """The file's text; a UTF-8 BOM (spreadsheet exports) is dropped, another encoding is a clear error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None


def _require_suffix(path: Path, allowed: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise SourceConfigError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected {', '.join(allowed)}")
    return suffix


def read_header_table(path: Path) -> Rows:
    """CSV/TSV with a header row (KADID's dmos.csv, KonIQ's CSVs, TAD66K's csv) or an .xlsx sheet (SPAQ)."""
    suffix = _require_suffix(require_file(path), (".csv", ".tsv", ".xlsx"))
    if suffix == ".xlsx":
        return read_xlsx(path)
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="\t" if suffix == ".tsv" else ",",
                            skipinitialspace=True)
    if reader.fieldnames:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    return [(f"{path.name}:{i + 2}", row) for i, row in enumerate(reader)]  # line 1 is the header


def read_xlsx(path: Path) -> Rows:
    """The first sheet of a workbook, its first row the header (openpyxl, read-only; values as stored)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises zip/xml errors of many types for a broken file
        raise SourceError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        sheet = book.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(values, ())]
        rows = []
        for i, cells in enumerate(values):
            if all(c is None for c in cells):
                continue
            rows.append((f"{path.name}:{sheet.title}!row {i + 2}", dict(zip(header, cells, strict=False))))
        return rows
    finally:
        book.close()


def read_plain_table(path: Path, delimiter: str | None = None) -> Rows:
    """A header-less text table (AVA.txt, FLICKR-AES_image_score.txt: whitespace; PIPAL labels: comma), each row a
    list of fields; blank lines are skipped, leading whitespace is ignored."""
    require_file(path)
    rows = []
    for i, line in enumerate(read_text(path).splitlines()):
        if line.strip():
            fields = line.split(delimiter) if delimiter else line.split()
            rows.append((f"{path.name}:{i + 1}", [f.strip() for f in fields]))
    return rows


def read_json_rows(path: Path) -> Rows:
    """A JSON list of objects (or an object holding exactly one list), or JSONL, one object per line."""
    suffix = _require_suffix(require_file(path), (".json", ".jsonl"))
    if suffix == ".jsonl":
        rows: Rows = []
        for i, line in enumerate(read_text(path).splitlines()):
            if line.strip():
                try:
                    rows.append((f"{path.name}:{i + 1}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    rows.append((f"{path.name}:{i + 1}", MalformedRow(f"not valid JSON: {exc.msg}")))
        return rows
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise SourceError(f"{path}: expected a JSON list of rows or an object holding exactly one list; found an "
                              f"object with keys {', '.join(list(data)[:8])}")
        data = lists[0]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON list of rows; found a {type(data).__name__}")
    return [(f"{path.name}[{i}]", row) for i, row in enumerate(data)]


def load_table(path: Path) -> Rows:
    """Any supported table by its suffix: JSON/JSONL as objects, CSV/TSV/XLSX by their header."""
    suffix = _require_suffix(require_file(path), (".json", ".jsonl", ".csv", ".tsv", ".xlsx"))
    return read_json_rows(path) if suffix in (".json", ".jsonl") else read_header_table(path)


def require_columns(path: Path, rows: Rows, columns: list[str]) -> None:
    """A table must name every column a format reads; say which are missing and which exist."""
    first = next((row for _, row in rows if isinstance(row, dict)), None)
    if first is None:
        return
    missing = [c for c in columns if c not in first]
    if missing:
        raise SourceError(f"{path}: no column {', '.join(map(repr, missing))}; found columns "
                          f"{', '.join(map(repr, list(first)[:12]))}")
