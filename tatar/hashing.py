"""Content hashes of files and folders, for manifests (image sha256) and checkpoint lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hashes(path: str | Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of a file or of every file under a folder (names in ``skip`` left out)."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {
        p.relative_to(path).as_posix(): sha256_file(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in skip and not any(part in skip for part in p.relative_to(path).parts)
    }


def tree_hash(path: str | Path, skip: tuple[str, ...] = ()) -> str:
    """One sha256 over a file or folder: stable under renaming of the folder itself."""
    h = hashlib.sha256()
    for rel, digest in file_hashes(path, skip).items():
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def dvc_md5(path: str | Path) -> str:
    """The md5 DVC 3 records in dvc.lock for a file or folder (a folder: md5 of its sorted entry list + '.dir'),
    so the lineage audit can compare what is on disk with what the lock says without asking DVC."""
    import json

    path = Path(path)

    def md5(p: Path) -> str:
        h = hashlib.md5()
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    if path.is_file():
        return md5(path)
    entries = sorted(({"md5": md5(p), "relpath": p.relative_to(path).as_posix()}
                      for p in path.rglob("*") if p.is_file()), key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"
