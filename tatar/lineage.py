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

from tatar.errors import InvalidDataError, MissingInputError
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
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
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


# ----------------------------------------------------------------------------------------------- audit
def read_lock(root: str | Path = ".", rev: str | None = None) -> dict:
    """dvc.lock from the working tree, or as committed at a git revision (a commit, tag, branch or DVC
    experiment name)."""
    import yaml

    root = Path(root)
    if rev is None:
        lock = root / "dvc.lock"
        if not lock.exists():
            raise FileNotFoundError(f"{lock}: not found; run the pipeline first (tatar run / dvc repro)")
        return yaml.safe_load(lock.read_text()) or {}
    text = subprocess.run(["git", "show", f"{_resolve_rev(root, rev)}:dvc.lock"], cwd=root,
                          capture_output=True, text=True)
    if text.returncode != 0:
        raise FileNotFoundError(f"dvc.lock at revision {rev!r}: {text.stderr.strip()}")
    return yaml.safe_load(text.stdout) or {}


def _resolve_rev(root: Path, rev: str) -> str:
    ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                        capture_output=True, text=True)
    if ok.returncode == 0:
        return ok.stdout.strip()
    # A DVC experiment name (dvc exp run / dvc exp show) lives under refs/exps.
    refs = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], cwd=root,
                          capture_output=True, text=True).stdout.split("\n")
    for line in refs:
        if line and line.rsplit("/", 1)[-1] == rev:
            return line.split()[0]
    raise FileNotFoundError(f"{rev!r} is neither a git revision nor a DVC experiment name")


def _outs(entry: dict) -> list[dict]:
    return entry.get("outs", []) or []


def producing_stage(lock: dict, path: str) -> str | None:
    """The stage whose outs hold ``path`` (the path itself or a folder above it)."""
    path = path.rstrip("/")
    for name, entry in lock.get("stages", {}).items():
        for out in _outs(entry):
            if path == out["path"] or path.startswith(out["path"].rstrip("/") + "/"):
                return name
    return None


def upstream_chain(lock: dict, stage: str) -> list[str]:
    """The stage and every stage it transitively depends on, upstream first."""
    seen: list[str] = []

    def visit(name: str):
        if name in seen:
            return
        for dep in lock["stages"][name].get("deps", []):
            parent = producing_stage(lock, dep["path"])
            if parent and parent != name:
                visit(parent)
        seen.append(name)

    visit(stage)
    return seen


def chain_stages(lock: dict, stage: str) -> list[dict]:
    """``stage`` and its upstream stages as dvc.lock records them (deps, params, outs), upstream first."""
    stages = []
    for name in upstream_chain(lock, stage):
        entry = lock["stages"][name]
        stages.append({
            "stage": name,
            "cmd": entry.get("cmd"),
            "deps": [{"path": d["path"], "md5": d.get("md5")} for d in entry.get("deps", [])],
            "params": {k: v for f in (entry.get("params") or {}).values() for k, v in f.items()},
            "outs": [{"path": o["path"], "md5": o.get("md5")} for o in _outs(entry)],
        })
    return stages


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _same_value(a, b) -> bool:
    """Equal as params: DVC's lock may hold a number as text ('1e-06') and a tuple as a list."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read_json(path: Path) -> dict | None:
    import json

    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidDataError(f"{path}: not valid JSON ({exc}); re-run the stage that wrote it") from None


def audit(checkpoint: str | Path, root: str | Path = ".", rev: str | None = None, check_disk: bool = True) -> dict:
    """The chain that produced ``checkpoint`` back to the raw data, from dvc.lock and lineage.json, with every
    disagreement between the two spelled out."""
    root, checkpoint = Path(root), Path(checkpoint)
    lineage = _read_json(checkpoint / LINEAGE_FILE)
    if lineage is None:
        raise MissingInputError(f"{checkpoint / LINEAGE_FILE}: not found; is {checkpoint} a tatar checkpoint?")
    lock = read_lock(root, rev)
    rel = _rel(checkpoint, root)
    stage = producing_stage(lock, rel)
    disagreements: list[str] = []
    stages = []
    if stage is None:
        disagreements.append(f"dvc.lock{f' at {rev}' if rev else ''} has no stage producing {rel}")
    else:
        stages = chain_stages(lock, stage)
        produced = stages[-1]
        # 1. Params the checkpoint says it was trained with vs params dvc.lock records for its stage.
        lineage_params = _flatten(lineage.get("params"))
        for key, value in _flatten(produced["params"]).items():
            if key in lineage_params and not _same_value(lineage_params[key], value):
                disagreements.append(f"param {key}: dvc.lock has {value!r}, lineage.json has {lineage_params[key]!r}")
        # 2. The checkpoint on disk vs the one dvc.lock records (only meaningful for the working tree's lock).
        # (Skipped right after `dvc repro`, which has just hashed the outputs: a 7B checkpoint is 16 GB to re-read.)
        if rev is None and check_disk:
            from tatar.hashing import dvc_md5

            for out in produced["outs"]:
                if out["path"] == rel and out["md5"] and dvc_md5(root / rel) != out["md5"]:
                    disagreements.append(f"{rel} on disk differs from the output dvc.lock records "
                                         f"({out['md5'][:12]}); it was changed or swapped after `{stage}` ran")
    corpus = _corpus_summary(stages, root, rev)
    if corpus is not None and (written_by := (lineage.get("training") or {}).get("teachers")):
        corpus["written_by"] = written_by  # the teachers named in the corpus records the checkpoint learnt from
    return {"checkpoint": rel, "stage": stage, "rev": rev, "stages": stages, "corpus": corpus,
            "lineage": {k: lineage.get(k) for k in ("stage", "created_at", "inputs", "started_from", "code",
                                                    "packages", "params", "training")},
            "disagreements": disagreements}


def _corpus_summary(stages: list[dict], root: Path, rev: str | None) -> dict | None:
    by_name = {s["stage"]: s for s in stages}
    if "rationales" not in by_name:
        return None
    teacher = by_name["rationales"]["params"].get("teacher", {})
    summary = {
        "teachers": _task_teachers(teacher),
        "prompt_version": teacher.get("prompt_version"),
        "sampling": {t: teacher.get(t) for t in ("iqa", "iaa")},
    }
    metrics = _metrics_at(root, "data/corpus/metrics.json", rev)
    if metrics:
        summary["keep_rate"] = {k: v for k, v in _flatten(metrics).items() if "keep_rate" in k}
    return summary


def _task_teachers(teacher: dict) -> dict[str, str]:
    """Each task's teacher as configured in dvc.lock's params (a task's own model / base_url, else the shared)."""
    from tatar.config import TeacherConfig
    from tatar.redact import public_url

    try:
        cfg = TeacherConfig.model_validate(teacher)
    except ValueError:  # params of an older or newer code version: read what is there
        own = {task: {**teacher, **(teacher.get(task) or {})} for task in ("iqa", "iaa")}
        return {task: f"{t.get('model')} at {public_url(t.get('base_url') or '')}" for task, t in own.items()}
    return {task: f"{cfg.for_task(task).model} at {public_url(cfg.for_task(task).base_url)}" for task in ("iqa", "iaa")}


def _metrics_at(root: Path, path: str, rev: str | None) -> dict | None:
    import json

    if rev is None:
        return _read_json(root / path)
    out = subprocess.run(["git", "show", f"{_resolve_rev(root, rev)}:{path}"], cwd=root, capture_output=True,
                         text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def verify_checkpoint(checkpoint: str | Path, root: str | Path = ".") -> list[str]:
    """Recompute the checkpoint's files and its recorded inputs; one line per file that differs."""
    from tatar.hashing import tree_hash

    checkpoint, root = Path(checkpoint), Path(root)
    lineage = _read_json(checkpoint / LINEAGE_FILE)
    if lineage is None:
        return [f"{checkpoint / LINEAGE_FILE}: missing"]
    problems = []
    recorded = lineage.get("files", {})
    actual = file_hashes(checkpoint, skip=(LINEAGE_FILE,))
    for rel, digest in recorded.items():
        if rel not in actual:
            problems.append(f"{checkpoint / rel}: missing (recorded in lineage.json)")
        elif actual[rel] != digest:
            problems.append(f"{checkpoint / rel}: content differs from lineage.json (sha256 {actual[rel][:12]} != "
                            f"{digest[:12]})")
    problems += [f"{checkpoint / rel}: not recorded in lineage.json (added after training)"
                 for rel in actual if rel not in recorded]
    for name, info in (lineage.get("inputs") or {}).items():
        path = Path(info["path"]) if Path(info["path"]).is_absolute() else root / info["path"]
        if info.get("sha256") and path.exists() and tree_hash(path) != info["sha256"]:
            problems.append(f"{path}: input '{name}' differs from the one this checkpoint was trained on")
    return problems


def final_checkpoint(root: str | Path = ".") -> Path | None:
    for name in ("grpo", "sft"):
        path = Path(root) / "data/models" / name
        if (path / LINEAGE_FILE).exists():
            return path
    return None


def lineage_markdown(checkpoint: str | Path, root: str | Path = ".", rev: str | None = None,
                     check_disk: bool = True) -> str:
    from tatar.lineage_view import render_markdown

    return render_markdown(audit(checkpoint, root, rev, check_disk))


def lineage_cli(checkpoint: Path, rev: str | None = None, as_json: bool = False, verify: bool = False,
                fmt: str = "text", width: int | None = None) -> int:
    import json
    import shutil

    from tatar.lineage_view import render

    try:
        report = audit(checkpoint, ".", rev)
    except FileNotFoundError as exc:
        print(exc)
        return 2
    problems = verify_checkpoint(checkpoint) if verify else []
    if as_json or fmt == "json":
        print(json.dumps({**report, "verify": problems if verify else None}, indent=2, default=str))
    else:
        print(render(report, fmt, width or min(shutil.get_terminal_size().columns, 160)), end="")
        if verify:
            print("verify: every file matches lineage.json" if not problems
                  else "verify failed:\n" + "\n".join(f"  {p}" for p in problems))
    return 1 if problems else 0


def lineage_diff_cli(a: str, b: str, checkpoint: str = "data/models/grpo", as_json: bool = False) -> int:
    import json

    from tatar.lineage_diff import lineage_diff, render_diff

    try:
        d = lineage_diff(a, b, ".", checkpoint)
    except FileNotFoundError as exc:
        print(exc)
        return 2
    print(json.dumps(d, indent=2, default=str) if as_json else render_diff(d), end="\n" if as_json else "")
    return 0
