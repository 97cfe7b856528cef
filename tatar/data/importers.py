"""Importers: read datasets from disk into candidate rows (checked by tatar.data.checks), never crashing on a bad
row: a row without an image or label field is quarantined as ``malformed_row`` with its location.

Training sets (``params.data.train``, one ``TrainSetConfig`` each) are read by their named format: see
``tatar.data.formats`` (re-exported here as ``import_train_set``).

Benchmarks: ``tatar data import NAME --images DIR`` checks DIR against the shipped evaluation manifest.
"""

from __future__ import annotations

from pathlib import Path

from tatar.data.checks import CheckResult, QuarantineRecord, RawRow, check_rows
from tatar.data.formats import ImportedRows, import_train_set  # noqa: F401 - the training-set importer
from tatar.data.formats.artimuse import attribute_key  # noqa: F401
from tatar.data.registry import Benchmark, get_benchmark, reference_manifest
from tatar.errors import MissingInputError
from tatar.records import ManifestRecord, read_records, write_jsonl


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
