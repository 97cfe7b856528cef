"""Record-level reply cache: one small JSON file per key, written atomically.

It lives outside DVC's outputs (``.tatar/cache/...``) so it survives DVC deleting a stage's outputs before a
re-run, and one-file-per-key makes it crash-safe without a journal: a SIGKILL leaves either the whole entry or
none of it, never a torn line, and concurrent writers of the same key simply write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tatar.records import write_json


def cache_key(**parts) -> str:
    """sha256 of the canonical JSON of everything that determines an answer (pass exactly those parts)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ReplyCache:
    """``root/ab/abcdef....json`` per key; ``root=None`` disables caching (benchmarks)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        path = self._file(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:  # impossible with atomic writes unless edited by hand: treat as a miss
            return None

    def put(self, key: str, entry: dict) -> None:
        if self.root is not None:
            write_json(self._file(key), {"key": key, **entry}, indent=None)

    def __len__(self) -> int:
        return 0 if self.root is None or not self.root.exists() else sum(1 for _ in self.root.glob("*/*.json"))
