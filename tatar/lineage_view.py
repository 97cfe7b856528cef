"""The human views of a checkpoint's lineage (``tatar lineage``): a plain-text tree that reads at 80 columns, and
the same content as markdown (Prefect artifact, model cards). Both render the dict ``tatar.lineage.audit`` returns.

One input or output per line with its short hash, params as ``key = value`` lines (long values folded under
their key), then the teacher(s), prompt version and keep rates of the corpus, the training run, the code commit
and the packages. Paths and hashes are never broken across lines, so a reader (or grep) finds each on one line.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable

from tatar.lineage import _flatten

HASH_CHARS = 8
INDENT = "    "
NBSP = "\u00a0"  # textwrap does not break here; turned back into a space after folding
# What each stage made, for the tree's headings (checkpoint <- grpo <- sft <- corpus <- rationales <- manifests).
STAGE_ROLES = {"prepare": "manifests", "rationales": "rationales", "validate": "corpus",
               "base_model": "base model", "sft": "SFT checkpoint", "grpo": "GRPO checkpoint",
               "evaluate": "evaluation"}


def launch_summary(facts: dict) -> str:
    """How a checkpoint was trained, in one line (``training.launch`` of its lineage; model card, stage output)."""
    return (f"{facts['engine']}, {facts['processes']} process(es) on {facts['machines']} machine(s) "
            f"({facts['device']}), mixed precision {facts['mixed_precision']}, "
            f"{facts['master_weights']} master weights")


def short(digest: str | None) -> str:
    return (digest or "-").removesuffix(".dir")[:HASH_CHARS]


def format_value(value) -> str:
    """A param value as YAML-ish text: ``[a, b]``, ``{k: v}``, ``true`` rather than Python reprs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _fold(first: str, rest: str, width: int, hang: str) -> list[str]:
    """``first + rest`` folded at ``width`` on spaces, continuation lines indented by ``hang``."""
    lines = textwrap.wrap(first + rest, width=width, subsequent_indent=hang, break_long_words=False,
                          break_on_hyphens=False) or [first.rstrip()]
    return [line.replace(NBSP, " ") for line in lines]


def param_lines(params: dict, width: int, indent: str) -> list[str]:
    lines = []
    for key, value in _flatten(params).items():
        head = f"{indent}{key} = "
        lines += _fold(head, format_value(value), width, " " * len(head))
    return lines


def teachers(corpus: dict) -> dict[str, str]:
    """Teacher per task ("model @ base_url"): a per-task ``model`` / ``base_url`` (in the sampling section of that
    task, or a ``teachers`` mapping) overrides the shared one."""
    shared = {"model": corpus.get("teacher_model"), "base_url": corpus.get("teacher_base_url")}
    per_task = corpus.get("teachers") or {}
    out = {}
    for task in ("iqa", "iaa"):
        if isinstance(per_task.get(task), str):  # already resolved by tatar.lineage ("model at url")
            out[task] = per_task[task]
            continue
        own = {**shared, **{k: v for k, v in ((corpus.get("sampling") or {}).get(task) or {}).items()
                            if k in ("model", "base_url") and v}}
        own.update({k: v for k, v in (per_task.get(task) or {}).items() if k in ("model", "base_url") and v})
        if own.get("model"):
            out[task] = f"{own['model']} at {own.get('base_url')}"
    return out


def _sampling(corpus: dict, task: str) -> str:
    s = {k: v for k, v in ((corpus.get("sampling") or {}).get(task) or {}).items() if k not in ("model", "base_url")}
    return ", ".join(f"{k} {format_value(v)}" for k, v in s.items())


# ------------------------------------------------------------------------------------------- sections
def _sections(report: dict) -> Iterable[tuple[str, list[tuple[str, list[tuple[str, object]]]]]]:
    """(title, [(subtitle, pairs)]) blocks from the checkpoint back to the raw data, shared by the text and
    markdown views: pairs are (cmd, None), (path, short hash) for inputs and outputs, (key, value) for params."""
    for s in reversed(report["stages"]):
        role = STAGE_ROLES.get(s["stage"], s["stage"])
        parts = [("cmd", [(s["cmd"], None)]), ("inputs", [(d["path"], short(d["md5"])) for d in s["deps"]])]
        if s["params"]:
            parts.append(("params", list(_flatten(s["params"]).items())))
        parts.append(("outputs", [(o["path"], short(o["md5"])) for o in s["outs"]]))
        yield f"{s['stage']}: {role}", parts


def _facts(report: dict) -> list[tuple[str, list[str]]]:
    """The non-DAG facts: teacher(s), prompt version, keep rate, training, code, packages."""
    out: list[tuple[str, list[str]]] = []
    corpus = report.get("corpus") or {}
    if corpus:
        lines = [f"{task} teacher: {who}" for task, who in teachers(corpus).items()]
        if corpus.get("written_by"):  # the teachers named in the corpus records the checkpoint learnt from
            from tatar.records import describe_teachers

            lines.append(f"corpus written by: {describe_teachers(corpus['written_by'])}")
        lines += [f"{task} sampling: {_sampling(corpus, task)}" for task in ("iqa", "iaa") if _sampling(corpus, task)]
        lines.append(f"prompt version: {corpus.get('prompt_version')}")
        lines += [f"{k}: {v:.1%}" if isinstance(v, (int, float)) else f"{k}: {v}"
                  for k, v in (corpus.get("keep_rate") or {}).items()]
        out.append(("corpus", lines))
    lin = report.get("lineage") or {}
    training = [f"stage: {lin.get('stage')}", f"created at: {lin.get('created_at')}"]
    started = lin.get("started_from") or {}
    if started:
        training.append(f"started from: {started.get('checkpoint')} (its lineage.json sha256 "
                        f"{short(started.get('lineage_sha256'))}, created {started.get('created_at')})")
    facts = lin.get("training") or {}
    if facts.get("launch"):  # how the checkpoint was trained (tatar.training.launch)
        training.append(f"trained with: {facts.get('checkpoint', '?')} weights, "
                        f"{launch_summary(facts['launch'])} (launch.config {facts['launch']['config']})")
    heldout = facts.get("heldout") or {}
    if heldout.get("evaluations"):
        training.append(f"held-out scoring: {heldout['images']} images x {heldout['evaluations']} evaluation(s), "
                        f"{heldout['seconds']} s")
    if heldout.get("best"):  # heldout.save_best: the weights kept are those of this step, not the last
        training.append(f"kept the best step: {heldout['best']['step']} (mean validation SRCC "
                        f"{heldout['best']['mean_srcc']})")
    out.append(("training", training))
    code = lin.get("code") or {}
    dirty = {True: " (uncommitted changes in tatar/ or flows/)", False: " (clean)"}.get(code.get("dirty"), "")
    out.append(("code", [f"commit {code.get('commit')}{dirty}"]))
    pkgs = [f"{k}{NBSP}{v}" for k, v in (lin.get("packages") or {}).items() if v]  # never split name and version
    out.append(("packages", [", ".join(pkgs)] if pkgs else []))
    return out


# ------------------------------------------------------------------------------------------------ text
def render_text(report: dict, width: int = 80) -> str:
    """The tree as plain text, folded at ``width`` columns (paths and hashes are never broken)."""
    where = f"dvc.lock at {report['rev']}" if report.get("rev") else "dvc.lock of the working tree"
    lines = [f"Lineage of {report['checkpoint']}  ({where})", ""]
    for n, (title, parts) in enumerate(_sections(report)):
        lines.append(("<- " if n else "") + title)
        for sub, pairs in parts:
            if sub == "cmd":
                lines += _fold("  cmd: ", str(pairs[0][0]), width, INDENT + "  ")
                continue
            lines.append(f"  {sub}")
            if sub == "params":
                lines += param_lines(dict(pairs), width, INDENT)
            else:
                lines += [f"{INDENT}{path}  {digest}" for path, digest in pairs] or [INDENT + "(none)"]
        lines.append("")
    for sub, items in _facts(report):
        lines.append(sub)
        for item in items:
            lines += _fold(INDENT, item, width, INDENT + "  ")
        lines.append("")
    lines.append("dvc.lock vs lineage.json: " + ("they agree" if not report["disagreements"] else "they DISAGREE"))
    for d in report["disagreements"]:
        lines += _fold(INDENT + "- ", d, width, INDENT + "  ")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- markdown
def render_markdown(report: dict) -> str:
    """The same content as markdown: one heading per stage, bullet lists, code spans for paths and hashes."""
    rev = f" at `{report['rev']}`" if report.get("rev") else ""
    lines = [f"## Lineage of `{report['checkpoint']}`{rev}", ""]
    for n, (title, parts) in enumerate(_sections(report)):
        lines += [f"### {'&larr; ' if n else ''}{title}", ""]
        for sub, pairs in parts:
            if sub == "params":
                body = [f"- `{k} = {format_value(v)}`" for k, v in pairs]
            elif sub == "cmd":
                lines += [f"**cmd** `{pairs[0][0]}`", ""]
                continue
            else:
                body = [f"- `{path}` `{digest}`" for path, digest in pairs] or ["- (none)"]
            lines += [f"**{sub}**", "", *body, ""]
    for sub, items in _facts(report):
        lines += [f"**{sub}**", "", *[f"- {i.replace(NBSP, ' ')}" for i in items], ""]
    lines.append("**dvc.lock vs lineage.json:** " + ("they agree" if not report["disagreements"] else "they disagree"))
    lines += [f"- {d}" for d in report["disagreements"]]
    return "\n".join(lines) + "\n"


def render(report: dict, fmt: str = "text", width: int = 80) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, default=str)
    return render_markdown(report) if fmt == "md" else render_text(report, width)
