""""Better or worse?": this evaluation next to the previous run's and the published numbers, per benchmark.

The previous run is ``data/eval/metrics.json`` as committed at ``HEAD`` (it is a DVC metric with ``cache: false``,
so git holds it: the same numbers ``dvc metrics diff`` compares against). Inside ``dvc exp run`` HEAD is the
experiment's baseline. The published column is the TATAR paper's row of ``published_results.json``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tatar.evaluation.metrics import EvalMetrics
from tatar.evaluation.report import _num, _table, published_name, published_results

METRICS_FILE = "data/eval/metrics.json"


def previous_metrics(root: str | Path = ".", rev: str = "HEAD", path: str = METRICS_FILE) -> tuple[str, dict] | None:
    """(label, metrics) of the run committed at ``rev``; None outside git or when nothing was committed there."""
    from tatar.lineage import _metrics_at

    root = Path(root)
    try:
        metrics = _metrics_at(root, path, rev)
    except (FileNotFoundError, ValueError):
        return None
    if not metrics:
        return None
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=root, capture_output=True, text=True)
    return f"{rev} {short.stdout.strip()}".strip(), metrics


def _delta(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "-"
    d = now - before
    return "=" if abs(d) < 5e-4 else f"{d:+.3f}"


def comparison_table(metrics: EvalMetrics, previous: tuple[str, dict] | None) -> str:
    """One row per benchmark: SRCC and PLCC now, at the previous run, the change, and the paper's numbers; and the
    parse-failure rate now and before."""
    label, before = previous or ("previous", {})
    paper = published_results()["rows"][0]
    rows = []
    for name, s in metrics.benchmarks.items():
        prev = (before.get("benchmarks") or {}).get(name) or {}
        col = published_name(name)
        pub = [_num(paper.get(k, {}).get(col)) if col and paper.get(k, {}).get(col) is not None else "-"
               for k in ("srcc", "plcc")]
        fail_prev = "-" if "parse_failure_rate" not in prev else f"{prev['parse_failure_rate']:.1%}"
        rows.append([name, _num(s.srcc), _num(prev.get("srcc")) if prev else "-", _delta(s.srcc, prev.get("srcc")),
                     _num(s.plcc), _num(prev.get("plcc")) if prev else "-", _delta(s.plcc, prev.get("plcc")),
                     f"{s.parse_failure_rate:.1%}", fail_prev, *pub])
    header = ["benchmark", "SRCC", f"SRCC ({label})", "change", "PLCC", f"PLCC ({label})", "change",
              "parse failures", f"parse failures ({label})", f"SRCC ({paper['system'].split(' (')[0]} paper)",
              "PLCC (paper)"]
    note = (f"Previous run: `{METRICS_FILE}` committed at {label}." if previous else
            f"No previous run: `{METRICS_FILE}` is not committed at HEAD (commit it after a run to compare the next).")
    return _table(header, rows) + "\n\n" + note
