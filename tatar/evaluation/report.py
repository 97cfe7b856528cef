"""What the ``evaluate`` stage writes for people: the markdown report, PNG plots and DVC plot data.

The report puts this run's SRCC/PLCC next to published numbers (``published_results.json``, a copy of the
project's reference table); benchmark names map to the published column names case- and punctuation-blind,
so ``koniq``, ``KonIQ-10K`` and ``koniq10k`` all land in the KonIQ column.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from tatar.atomic_write import atomic_open, atomic_path, write_text
from tatar.evaluation.metrics import TASKS, EvalMetrics, Prediction, Summary

THINK_BIN_WORDS = 10  # width of a think-length histogram bin
_ALIASES = {"kadid10k": "KADID", "koniq10k": "KonIQ", "artimuse": "ArtiMuse-10K", "flickr": "FLICKR-AES",
            "pipalnr": "PIPAL"}


@cache
def published_results() -> dict:
    return json.loads(resources.files("tatar.evaluation").joinpath("published_results.json").read_text())


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def published_name(benchmark: str) -> str | None:
    """The published column of a benchmark name (``koniq`` -> ``KonIQ``); None for e.g. the synthetic sets."""
    names = {_key(b): b for b in published_results()["benchmarks"]} | _ALIASES
    return names.get(_key(benchmark))


# ---------------------------------------------------------------------------------------------- tables
def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _row(name: str, s: Summary) -> list[str]:
    plcc_l = _num(s.plcc_logistic) + (" (fit failed: raw)" if s.logistic_fallback else "")
    return [name, s.task.upper(), str(s.n), f"{s.parse_failures} ({s.parse_failure_rate:.1%})", _num(s.srcc),
            _num(s.plcc), plcc_l, _num(s.krcc), f"{s.mean_think_words:.1f}", _num(s.images_per_s, 2)]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def metrics_table(metrics: EvalMetrics) -> str:
    """This run: one row per benchmark, then one per task (correlations averaged over its benchmarks)."""
    header = ["benchmark", "task", "n", "parse failures", "SRCC", "PLCC", "PLCC (logistic)", "KRCC",
              "think words", "images/s"]
    rows = [_row(name, s) for name, s in metrics.benchmarks.items()]
    rows += [_row(f"**{task.upper()} (mean)**", s) for task, s in metrics.tasks.items()]
    return _table(header, rows)


def distortion_tables(metrics: EvalMetrics) -> str:
    """Per benchmark whose file names say the distortion: SRCC across references and within each reference."""
    parts = []
    for name, rows in metrics.distortions.items():
        parts.append(f"`{name}`\n\n" + _table(
            ["distortion", "n", "SRCC", "SRCC within reference (mean)", "references"],
            [[d, str(r.n), _num(r.srcc), _num(r.within_reference_srcc),
              f"{r.references}" + (f" ({r.undefined} constant: left out)" if r.undefined else "")]
             for d, r in rows.items()]))
    return "\n\n".join(parts)


def spread_notes(metrics: EvalMetrics) -> list[str]:
    """One line per benchmark whose predictions are constant or nearly so (printed by the stage, in the report)."""
    return [f"{name}: {s.spread_note}" for name, s in metrics.benchmarks.items() if s.spread_note]


def published_table(metrics: EvalMetrics) -> str:
    """SRCC / PLCC per published benchmark: this run's row first, then every published system."""
    published = published_results()
    columns = published["benchmarks"]
    ours = {published_name(name): s for name, s in metrics.benchmarks.items() if published_name(name)}

    def published_pair(srcc, plcc) -> str:  # None = not reported
        if srcc is None and plcc is None:
            return "-"
        return " / ".join("-" if v is None else f"{v:.3f}" for v in (srcc, plcc))

    rows = [["**this run**"] + [f"{_num(ours[c].srcc)} / {_num(ours[c].plcc)}" if c in ours else "-"
                                for c in columns]]
    for r in published["rows"]:
        srcc, plcc = r.get("srcc", {}), r.get("plcc", {})
        rows.append([r["system"]] + [published_pair(srcc.get(c), plcc.get(c)) for c in columns])
    return _table(["system", *columns], rows)


READOUT_NOTE = (" with its tens digit read as the expectation under the model's probabilities at that token "
                "(`eval.readout: expected`; published results read the greedy number)")


def markdown_report(metrics: EvalMetrics, previous: tuple[str, dict] | None = None) -> str:
    from tatar.evaluation.compare import comparison_table

    published = published_results()
    parts = [
        f"# Evaluation of `{metrics.checkpoint}`",
        "## Better or worse? This run, the previous run and the paper",
        comparison_table(metrics, previous),
        "## This run",
        ("Greedy decoding with the shared prompts; a prediction is the single number inside the last "
         "`<answer>`" + (READOUT_NOTE if metrics.readout == "expected" else "") + ", anything else is a parse "
         "failure (counted here, kept with its raw text in "
         "`predictions/`, left out of the correlations). SRCC is tie-aware, KRCC is tau-b, PLCC (logistic) "
         "follows the 4-parameter logistic fit; n/a = undefined (constant predictions or fewer than two parsed)."),
        metrics_table(metrics),
    ]
    notes = spread_notes(metrics)
    if notes:
        parts.append("**Predictions that do not vary**:\n\n" + "\n".join(f"- {n}" for n in notes))
    if metrics.skipped:
        parts.append("**Skipped** (`eval.skip_missing`):\n\n" + "\n".join(
            f"- `{name}`: {why}" for name, why in metrics.skipped.items()))
    if metrics.distortions:
        parts += ["## By distortion",
                  ("For benchmarks whose file names say what each image shows (KADID-10k, the synthetic set): SRCC "
                   "over each distortion's images across reference scenes, and the mean SRCC within each reference "
                   "(does the score fall as the distortion strengthens?)."),
                  distortion_tables(metrics)]
    parts += [
        "## Next to published results (SRCC / PLCC)",
        ("Values as reported by each source (`-` = not reported; n/a = undefined in this run). Benchmarks "
         "without published numbers, such as the embedded synthetic sets, appear only in the table above."),
        published_table(metrics),
        "Sources: " + "; ".join(f"{r['system']}: {r['source']}" for r in published["rows"]) + ".",
    ]
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------- plots
def _think_bins(predictions: Sequence[Prediction]) -> dict[int, int]:
    """{bin start (words): count} with empty bins kept, so histograms have no gaps."""
    starts = [p.think_words // THINK_BIN_WORDS * THINK_BIN_WORDS for p in predictions]
    return {b: starts.count(b) for b in range(min(starts), max(starts) + 1, THINK_BIN_WORDS)}


def _by_task(predictions: Mapping[str, Sequence[Prediction]]) -> dict[str, list[Prediction]]:
    out: dict[str, list[Prediction]] = {}
    for preds in predictions.values():
        for p in preds:
            out.setdefault(p.task, []).append(p)
    return {task: out[task] for task in TASKS if task in out}


def write_plot_data(predictions: Mapping[str, Sequence[Prediction]], out_dir: Path) -> None:
    """DVC plot data: ``scatter.csv`` (parsed predictions against ground truth) and ``think_words.csv``
    (one row per histogram bin, labelled ``"<task> <lo>-<hi>"`` with zero-padded numbers, because DVC's
    horizontal bar template orders its bars alphabetically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "scatter.csv", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["benchmark", "task", "id", "score_100", "pred"])
        for name, preds in predictions.items():
            writer.writerows([name, p.task, p.id, p.score_100, p.pred] for p in preds if p.pred is not None)
    with atomic_open(out_dir / "think_words.csv", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["bin", "task", "think_words", "count"])
        for task, preds in _by_task(predictions).items():
            for start, count in _think_bins(preds).items():
                writer.writerow([f"{task} {start:03d}-{start + THINK_BIN_WORDS - 1:03d}", task, start, count])


def write_plots(predictions: Mapping[str, Sequence[Prediction]], metrics: EvalMetrics, plots_dir: Path) -> list[Path]:
    """PNG plots: ``scatter_<benchmark>.png`` and ``think_words_<task>.png``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (and no GUI toolkit import)
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, preds in predictions.items():
        s = metrics.benchmarks[name]
        parsed = [p for p in preds if p.pred is not None]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter([p.score_100 for p in parsed], [p.pred for p in parsed], s=10, alpha=0.6)
        ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--")
        ax.set(xlim=(0, 100), xlabel="ground truth (0-100)", ylabel="prediction",
               title=f"{name}: SRCC {_num(s.srcc)}, PLCC {_num(s.plcc)}\n"
                     f"{s.n} images, {s.parse_failures} parse failures")
        written.append(plots_dir / f"scatter_{name}.png")
        with atomic_path(written[-1]) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
    for task, preds in _by_task(predictions).items():
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist([p.think_words for p in preds], bins=range(0, max(p.think_words for p in preds) + 2 * THINK_BIN_WORDS,
                                                          THINK_BIN_WORDS))
        ax.set(xlabel="words inside <think>", ylabel="images",
               title=f"{task.upper()}: think length (mean {metrics.tasks[task].mean_think_words:.1f} words)")
        written.append(plots_dir / f"think_words_{task}.png")
        with atomic_path(written[-1]) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return written


def write_report(predictions: Mapping[str, Sequence[Prediction]], metrics: EvalMetrics, out_dir: Path,
                 previous: tuple[str, dict] | None = None) -> None:
    """Everything under ``out_dir`` except predictions and metrics.json: report.md, plots/, plot CSVs.
    ``previous``: (label, metrics) of the previous run (``tatar.evaluation.compare.previous_metrics``)."""
    write_text(out_dir / "report.md", markdown_report(metrics, previous))
    write_plot_data(predictions, out_dir)
    write_plots(predictions, metrics, out_dir / "plots")
