"""Lineage of checkpoints: what ``lineage.json`` records at training time, and the audit (``tatar lineage``).

DVC's ``dvc.lock`` is the authoritative record of the DAG (hashes of every stage's deps, params and outs);
``lineage.json`` travels *inside* the checkpoint so a checkpoint copied away from the repo still says where it
came from. The audit reads both and reports where they disagree.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from tatar.hashing import file_hashes, tree_hash
from tatar.records import write_json

LINEAGE_FILE = "lineage.json"
PACKAGES = ("tatar", "torch", "torchvision", "transformers", "trl", "peft", "accelerate", "datasets",
            "openai", "great-expectations", "dvc", "prefect")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def git_commit(cwd: str | Path = ".") -> dict[str, str | bool | None]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "tatar", "flows"))}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def write_lineage(out_dir: str | Path, stage: str, inputs: dict[str, str | Path], params: dict,
                  extra: dict | None = None) -> dict:
    """Write ``out_dir/lineage.json``. Call it last, after the model, processor and model card are saved:
    it records the sha256 of every file in the checkpoint so ``tatar lineage --verify`` catches tampering."""
    out_dir = Path(out_dir)
    record = {
        "stage": stage,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            name: {"path": str(path), "sha256": tree_hash(path) if Path(path).exists() else None}
            for name, path in inputs.items()
        },
        "params": params,
        "code": git_commit(),
        "packages": package_versions(),
        "files": file_hashes(out_dir, skip=(LINEAGE_FILE,)),
        **(extra or {}),
    }
    write_json(out_dir / LINEAGE_FILE, record)
    return record
