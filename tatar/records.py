"""Data contracts between stages and crash-safe JSONL helpers.

A manifest record is one labelled image; a rationale record is the teacher's explanation of its label.
Both are plain pydantic models serialised one per line, so every stage output is greppable and diffable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tatar.atomic_write import atomic_open, write_text
from tatar.errors import InvalidDataError

Task = Literal["iqa", "iaa"]

# The eight ArtiMuse aesthetic attributes, in the order the IAA narrative covers them.
ATTRIBUTES = (
    "visual_elements",
    "composition",
    "gestalt",
    "technical_execution",
    "theme",
    "emotion",
    "originality",
    "overall",
)


class ManifestRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str  # stable: "<dataset>/<relative path>"
    image: str  # path relative to ``root``
    root: str  # the dataset's declared image folder (absolute, or relative to the project root)
    task: Task
    dataset: str
    split: Literal["train", "test"]
    score: float  # label as in the source
    score_100: float  # mapped by the dataset's declared scale, flipped when lower is better
    attributes: dict[str, str] | None = None  # ArtiMuse-style texts keyed by ATTRIBUTES
    sha256: str  # of the image bytes

    @property
    def path(self) -> Path:
        return Path(self.root) / self.image


class TeacherIdentity(BaseModel):
    """The teacher of one record (each task may have its own); never a key or a credential."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt_version: str
    temperature: float
    top_p: float
    max_tokens: int
    base_url: str | None = None  # without credentials; "local" for the reference teacher
    served_model: str | None = None  # the model name the server answered with, when it differs from ``model``


class RationaleRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    task: Task
    dataset: str
    image: str
    root: str
    score_100: float
    attributes: dict[str, str] | None = None
    teacher: TeacherIdentity
    raw: str  # the teacher's text as received
    reasoning: str | None = None  # a reasoning model's own reasoning (never part of ``think``)
    think: str  # normalised rationale
    answer: str  # "NN.NN", the 0-100 ground truth
    think_words: int
    cache_key: str

    @property
    def path(self) -> Path:
        return Path(self.root) / self.image

    @property
    def text(self) -> str:
        """The SFT target in the output contract."""
        from tatar.parsing import format_target

        return format_target(self.think, float(self.answer))


def teachers_of(records: Iterable[RationaleRecord]) -> dict[str, list[dict]]:
    """Per task, the teachers that wrote these records (model, base_url, how many records): for lineage and cards."""
    counts: dict[tuple, int] = {}
    for r in records:
        key = (r.task, r.teacher.model, r.teacher.base_url)
        counts[key] = counts.get(key, 0) + 1
    out: dict[str, list[dict]] = {}
    for (task, model, base_url), n in counts.items():
        out.setdefault(task, []).append({"model": model, "base_url": base_url, "records": n})
    return out


def describe_teachers(teachers: dict[str, list[dict]]) -> str:
    """"iqa: Qwen/Qwen3-VL-32B-Instruct at http://... (120 records); iaa: ..." """
    return "; ".join(f"{task}: " + ", ".join(f"{t['model']} at {t['base_url'] or '?'} ({t['records']} records)"
                                            for t in found) for task, found in teachers.items())


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Yield one dict per non-empty line (a UTF-8 BOM and CRLF line ends are accepted).

    A line that is not a JSON object - including a torn last line left by a killed writer - raises
    ``InvalidDataError`` naming the file and line: a record is never dropped silently. A missing file yields
    nothing (callers that need it check first and say which stage makes it)."""
    for _, row in numbered_rows(path):
        yield row


def numbered_rows(path: str | Path, objects_only: bool = True) -> Iterator[tuple[int, object]]:
    """(line number, row) pairs of ``read_jsonl``, for messages that point at a line. ``objects_only=False``
    passes valid JSON that is not an object through, for a caller that rejects such rows as records."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise InvalidDataError(f"{path}: is a folder, expected a JSONL file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidDataError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    for i, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            torn = " (the last line is cut off: was its writer killed? re-run the stage that writes it)" \
                if i == len(lines) - 1 else ""
            raise InvalidDataError(f"{path}:{i + 1}: not valid JSON ({exc.msg}){torn}") from None
        if objects_only and not isinstance(row, dict):
            raise InvalidDataError(f"{path}:{i + 1}: expected a JSON object, got a {type(row).__name__}")
        yield i + 1, row


def read_records(path: str | Path, model: type[BaseModel]) -> list:
    """Every line of ``path`` as a ``model``; a line that does not fit names the file, line, record and field."""
    from pydantic import ValidationError

    records = []
    for line, row in numbered_rows(path):
        try:
            records.append(model.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "record"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise InvalidDataError(f"{path}:{line}: record {row.get('id', '?')!r}: {field}: {err['msg']}{more}; "
                                   f"expected a {model.__name__}") from None
    return records


def _dump(obj) -> str:
    if isinstance(obj, BaseModel):
        return obj.model_dump_json()
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


def write_jsonl(path: str | Path, rows: Iterable) -> int:
    """Atomically (re)write a JSONL file: readers never see a half-written file."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(_dump(row) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj, indent: int = 2) -> None:
    """Atomically write a JSON document."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")
