"""``tatar lineage diff A B``: what differs between the chains that produced two checkpoints.

A and B are checkpoint folders (holding ``lineage.json``), git revisions or DVC experiment names (then the
checkpoint at ``--checkpoint`` as that revision's dvc.lock records it). The chains are compared stage by stage,
upstream first: inputs by hash, params by key, outputs by hash; then the teacher(s), the code commit and the
packages. The first stage that differs is where the chains diverge; every later stage that differs is downstream.
"""

from __future__ import annotations

import json
from pathlib import Path

from tatar.lineage import (
    LINEAGE_FILE,
    _corpus_summary,
    _flatten,
    _resolve_rev,
    _same_value,
    audit,
    chain_stages,
    producing_stage,
    read_lock,
)
from tatar.lineage_view import INDENT, format_value, short, teachers


def lineage_at(root: Path, checkpoint: str, rev: str) -> dict:
    """``lineage.json`` of ``checkpoint`` as committed at ``rev``, read from the DVC cache; {} when absent."""
    try:
        import dvc.api

        text = dvc.api.read(f"{checkpoint}/{LINEAGE_FILE}", repo=str(root), rev=_resolve_rev(root, rev))
        return json.loads(text)
    except Exception:  # noqa: BLE001 - not pushed/pulled, or not a DVC output at that revision: the lock still compares
        return {}


def load_side(spec: str, root: str | Path = ".", checkpoint: str = "data/models/grpo") -> dict:
    """An audit-shaped report for one side of a diff."""
    root = Path(root)
    folder = Path(spec) if Path(spec).is_absolute() else root / spec
    if (folder / LINEAGE_FILE).is_file():
        report = audit(folder, root, None, check_disk=False)
        return {**report, "label": f"{report['checkpoint']} (working tree)"}
    try:
        lock = read_lock(root, spec)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{spec!r}: not a checkpoint folder (no {LINEAGE_FILE}), a git revision or a DVC "
                                f"experiment name ({exc})") from None
    stage = producing_stage(lock, checkpoint)
    if stage is None:
        raise FileNotFoundError(f"dvc.lock at {spec!r} has no stage producing {checkpoint}")
    stages = chain_stages(lock, stage)
    lineage = lineage_at(root, checkpoint, spec)
    return {"checkpoint": checkpoint, "stage": stage, "rev": spec, "stages": stages,
            "corpus": _corpus_summary(stages, root, spec), "lineage": lineage, "disagreements": [],
            "label": f"{checkpoint} at {spec}"}


def _by_path(items: list[dict]) -> dict[str, str | None]:
    return {i["path"]: i["md5"] for i in items}


def _changes(a: dict, b: dict, same=lambda x, y: x == y) -> list[dict]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in list(a) + [k for k in b if k not in a]
            if k not in a or k not in b or not same(a[k], b[k])]


def diff_reports(a: dict, b: dict) -> dict:
    """Stage-by-stage differences of two audit reports (upstream first) and the stage where they diverge."""
    stages_a = {s["stage"]: s for s in a["stages"]}
    stages_b = {s["stage"]: s for s in b["stages"]}
    order = list(stages_a) + [n for n in stages_b if n not in stages_a]
    stages, same = [], []
    for name in order:
        sa, sb = stages_a.get(name), stages_b.get(name)
        if sa is None or sb is None:
            stages.append({"stage": name, "only_in": "a" if sb is None else "b"})
            continue
        entry = {"stage": name,
                 "inputs": _changes(_by_path(sa["deps"]), _by_path(sb["deps"])),
                 "params": _changes(_flatten(sa["params"]), _flatten(sb["params"]), _same_value),
                 "outputs": _changes(_by_path(sa["outs"]), _by_path(sb["outs"])),
                 "cmd": None if sa["cmd"] == sb["cmd"] else {"a": sa["cmd"], "b": sb["cmd"]}}
        if any(entry[k] for k in ("inputs", "params", "outputs", "cmd")):
            stages.append(entry)
        else:
            same.append(name)
    la, lb = a.get("lineage") or {}, b.get("lineage") or {}
    ta, tb = teachers(a.get("corpus") or {}), teachers(b.get("corpus") or {})
    ca, cb = la.get("code") or {}, lb.get("code") or {}
    return {
        "a": a["label"], "b": b["label"],
        "first_divergence": stages[0]["stage"] if stages else None,
        "differs": stages, "same": same,
        "teacher": None if ta == tb else {"a": ta, "b": tb},
        "prompt_version": _pair((a.get("corpus") or {}).get("prompt_version"),
                                (b.get("corpus") or {}).get("prompt_version")),
        "code": _pair(ca, cb) if (ca.get("commit"), ca.get("dirty")) != (cb.get("commit"), cb.get("dirty")) else None,
        "packages": _changes(la.get("packages") or {}, lb.get("packages") or {}) if la and lb else None,
        "lineage_json": {"a": bool(la), "b": bool(lb)},
    }


def _pair(x, y):
    return None if x == y else {"a": x, "b": y}


def lineage_diff(a: str, b: str, root: str | Path = ".", checkpoint: str = "data/models/grpo") -> dict:
    return diff_reports(load_side(a, root, checkpoint), load_side(b, root, checkpoint))


# ------------------------------------------------------------------------------------------------ text
def _arrow(x, y, hashes: bool) -> str:
    fmt = short if hashes else format_value
    return f"{'(absent)' if x is None else fmt(x)} -> {'(absent)' if y is None else fmt(y)}"


def render_diff(d: dict) -> str:
    lines = [f"A: {d['a']}", f"B: {d['b']}", ""]
    if d["first_divergence"] is None:
        lines.append("The chains are the same: every stage has the same inputs, params and outputs.")
    else:
        lines.append(f"The chains diverge at stage {d['first_divergence']}.")
    for s in d["differs"]:
        if "only_in" in s:
            lines += ["", f"{s['stage']}: only in {s['only_in'].upper()}"]
            continue
        downstream = "" if s["stage"] == d["first_divergence"] else "  (downstream)"
        lines += ["", f"{s['stage']}: differs{downstream}"]
        if s["cmd"]:
            lines.append(f"  cmd: {s['cmd']['a']} -> {s['cmd']['b']}")
        for sub, hashes in (("params", False), ("inputs", True), ("outputs", True)):
            if s[sub]:
                lines.append(f"  {sub}")
                lines += [f"{INDENT}{c['key']}: {_arrow(c['a'], c['b'], hashes)}" for c in s[sub]]
    lines += ["", "same: " + (", ".join(d["same"]) or "(no stage)")]
    for name in ("teacher", "prompt_version"):
        lines.append(f"{name.replace('_', ' ')}: " + ("same" if d[name] is None else
                                                      f"{format_value(d[name]['a'])} -> {format_value(d[name]['b'])}"))
    if d["code"] is None:
        lines.append("code: same commit")
    else:
        a, b = d["code"]["a"], d["code"]["b"]
        lines.append(f"code: {(a.get('commit') or '?')[:12]}{' (dirty)' if a.get('dirty') else ''} -> "
                     f"{(b.get('commit') or '?')[:12]}{' (dirty)' if b.get('dirty') else ''}")
    if d["packages"] is None:
        missing = [k.upper() for k, v in d["lineage_json"].items() if not v]
        lines.append(f"packages: unknown ({', '.join(missing)} has no readable lineage.json)")
    else:
        lines.append("packages: " + ("same" if not d["packages"] else
                                     ", ".join(f"{c['key']} {c['a']} -> {c['b']}" for c in d["packages"])))
    return "\n".join(lines) + "\n"
