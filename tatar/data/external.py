"""Training label files that live outside the project, tracked the DVC-native way.

``tatar data add FILE... --name NAME`` runs ``dvc import-url FILE data/raw/NAME/<file name>``: DVC copies the file
into the project (and its cache) and records the source and its hash in ``data/raw/NAME/<file name>.dvc``.
``prepare`` depends on ``data/raw``, and ``tatar run`` first runs ``dvc update`` on those imports, so an edit of
the external file re-runs ``prepare`` (and what depends on its outputs) on the next run; ``dvc repro`` users run
``dvc update -R data/raw`` first. Images stay where they are (their bytes are hashed into the manifests).
"""

from __future__ import annotations

from pathlib import Path

from tatar.errors import TatarError

RAW_DIR = Path("data/raw")


class ExternalSourceError(TatarError):
    """An external training file that cannot be imported or updated."""


def imported_path(name: str, source: Path) -> Path:
    return RAW_DIR / name / source.name


def add_external(sources: list[Path], name: str, project: Path = Path(".")) -> list[Path]:
    """Import each file under ``data/raw/NAME/`` (paths relative to the project, for ``data.train[].path``)."""
    from dvc.repo import Repo

    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise ExternalSourceError(f"not a file: {', '.join(missing)} (tatar data add imports label files; images "
                                  f"stay where they are and are named by data.train[].images)")
    names = [s.name for s in sources]
    if len(set(names)) < len(names):
        raise ExternalSourceError(f"two files named alike ({', '.join(names)}) would land on one path under "
                                  f"{RAW_DIR / name}; add them under different --name values")
    outs = []
    with Repo(str(project)) as repo:
        for source in sources:
            out = imported_path(name, source)
            (project / out).parent.mkdir(parents=True, exist_ok=True)
            repo.imp_url(str(source.resolve()), out=str(out), force=True)
            outs.append(out)
    return outs


def import_files(project: Path = Path(".")) -> list[str]:
    return sorted(p.relative_to(project).as_posix() for p in (project / RAW_DIR).rglob("*.dvc"))


def update_external(project: Path = Path(".")) -> list[str]:
    """``dvc update`` every import under data/raw; returns the imports whose source changed."""
    targets = import_files(project)
    if not targets:
        return []
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        before = {t: (project / t).read_text() for t in targets}
        try:
            repo.update(targets=targets)
        except Exception as exc:  # noqa: BLE001 - DVC raises many types; the message says which source
            raise ExternalSourceError(f"dvc update of {', '.join(targets)} failed: {exc}") from None
    return [t for t in targets if (project / t).read_text() != before[t]]


def add_cli(sources: list[Path], name: str) -> int:
    try:
        outs = add_external(sources, name)
    except TatarError as exc:
        print(f"tatar data add: {exc}")
        return 2
    for out in outs:
        print(f"imported -> {out} (tracked by {out}.dvc; commit it)")
    first = outs[0].as_posix()
    print(f"add to params.yaml data.train: {{name: {name}, format: <format>, path: {first}, images: <images folder>}}")
    return 0
