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
