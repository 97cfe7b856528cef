"""The benchmark registry: task, declared label scale and evaluation manifest of each benchmark.

Scales are *declared* from each dataset's documentation, never guessed from the values: a KonIQ MOS of 4.2 is
4.2 on 0-100 (the reference code saw ``1 <= 4.2 <= 5`` and mapped it to 80).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tatar.errors import UnknownNameError
from tatar.records import Task

# Where `tatar data import NAME` writes a benchmark's test manifest (relative to the project root).
IMPORTED_DIR = Path("data/benchmarks")


@dataclass(frozen=True)
class Scale:
    """A label scale [lo, hi]; ``lower_is_better`` for DMOS-like labels, which are flipped on 0-100."""

    lo: float
    hi: float
    lower_is_better: bool = False

    def __post_init__(self):
        if not self.hi > self.lo:
            raise ValueError(f"scale [{self.lo}, {self.hi}]: hi must be greater than lo")

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def to_100(self, value: float) -> float:
        """Map a label on this scale to 0-100 where higher is better (linear, no clipping: check first)."""
        if not math.isfinite(value):
            raise ValueError(f"label {value!r} is not a finite number")
        unit = (value - self.lo) / (self.hi - self.lo)
        if self.lower_is_better:
            unit = 1.0 - unit
        return 100.0 * unit

    def __str__(self) -> str:
        direction = "lower is better" if self.lower_is_better else "higher is better"
        return f"[{self.lo:g}, {self.hi:g}] {direction}"


# The embedded synthetic sets score on 0-100 directly.
SYNTHETIC_SCALE = Scale(0, 100)
# DeQA-Score metas rescale each dataset's MOS linearly to [1, 5] (``gt_score_norm = 4 (mos - min) / (max - min) + 1``).
DEQA_NORM_SCALE = Scale(1, 5)


@dataclass(frozen=True)
class Benchmark:
    name: str  # canonical name = manifest file stem = test manifest name
    task: Task
    scale: Scale
    label: str  # what the stored label is
    aliases: tuple[str, ...] = ()

    @property
    def reference_file(self) -> str:
        return f"{self.name}.json"

    @property
    def imported_manifest(self) -> Path:
        return IMPORTED_DIR / f"{self.name}.jsonl"


# Scales as stored in the shipped manifests (tatar/data/benchmarks/PROVENANCE.md).
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("KonIQ-10K", "iqa", Scale(0, 100), "MOS", ("koniq", "koniq10k")),
        Benchmark("SPAQ", "iqa", Scale(0, 100), "MOS"),
        # KADID-10k calls its label DMOS, but it is a 1-5 rating where higher is better: no flip.
        Benchmark("KADID", "iqa", Scale(1, 5), "DMOS (higher is better)", ("kadid10k", "kadid-10k")),
        Benchmark("PIPAL", "iqa", Scale(1, 5), "Elo rescaled to 1-5"),
        Benchmark("AVA", "iaa", Scale(1, 10), "mean vote"),
        Benchmark("TAD66K", "iaa", Scale(1, 10), "mean score"),
        Benchmark("FLICKR-AES", "iaa", Scale(0, 1), "normalised mean rating", ("flickr_aes", "flickraes")),
        Benchmark("ArtiMuse-10K", "iaa", Scale(0, 10), "expert overall score", ("artimuse", "artimuse10k")),
    )
}


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


_LOOKUP = {_key(alias): b for b in BENCHMARKS.values() for alias in (b.name, *b.aliases)}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (case-insensitive, aliases such as ``koniq`` accepted)."""
    try:
        return _LOOKUP[_key(name)]
    except KeyError:
        raise UnknownNameError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def reference_manifest(name: str) -> list[dict]:
    """The shipped evaluation manifest: a list of {"image", "gt_score"}."""
    bench = get_benchmark(name)
    text = resources.files("tatar.data").joinpath("benchmarks", bench.reference_file).read_text(encoding="utf-8")
    return json.loads(text)


def print_registry() -> None:
    """`tatar data list`: one row per benchmark."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Benchmarks (import with: tatar data import NAME --images DIR)")
    for column in ("name", "task", "label", "scale", "items", "imported", "aliases"):
        table.add_column(column)
    for b in BENCHMARKS.values():
        imported = b.imported_manifest
        n_imported = sum(1 for line in imported.open() if line.strip()) if imported.exists() else None
        table.add_row(
            b.name, b.task.upper(), b.label, str(b.scale), str(len(reference_manifest(b.name))),
            f"{n_imported} in {imported}" if n_imported is not None else "-", ", ".join(b.aliases),
        )
    Console().print(table)
