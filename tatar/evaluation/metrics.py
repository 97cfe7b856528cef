"""Correlation metrics of predicted against ground-truth scores, as IQA/IAA papers report them.

- SRCC: Spearman's rank correlation with average ranks for ties (AVA holds 466 distinct labels over 19,930
  images, so tie handling matters).
- PLCC: Pearson's correlation of the raw predictions, and after the standard 4-parameter logistic map
  (VQEG) fitted from predictions to ground truth, which removes a monotone non-linearity before measuring
  linearity. If the fit fails, ``plcc_logistic`` falls back to the raw PLCC and ``logistic_fallback`` says so.
- KRCC: Kendall's tau-b (tie-corrected).

A correlation is undefined when either side is constant (e.g. a model that always answers 50): it is then
reported as ``None`` (``null`` in JSON), never as 0 and never as a crash.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import get_args

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import optimize, stats

from tatar.evaluation.distortions import DistortionSummary
from tatar.readout import Readout
from tatar.records import Task

METRIC_KEYS = ("srcc", "plcc", "plcc_logistic", "krcc")
NEAR_CONSTANT_STD = 1.0  # predictions spread less than 1 point on 0-100: "nearly constant" in the report
TASKS: tuple[str, ...] = get_args(Task)  # ("iqa", "iaa"): the order of task rows


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG's 4-parameter logistic: rises from ``b2`` to ``b1``, centred at ``b3`` with width ``|b4|``."""
    z = np.clip(-(x - b3) / np.abs(b4), -500.0, 500.0)  # no overflow warnings far from the centre
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic(pred: Sequence[float], gt: Sequence[float]) -> np.ndarray | None:
    """Least-squares fit of :func:`logistic4` from ``pred`` to ``gt``; None when it does not converge.

    The initial guess spans the ground-truth range, centred on the predictions' mean with their spread as
    width, so the fit starts sensibly whatever the scales (0-1, 1-10, 0-100).
    """
    x, y = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    if x.size < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    p0 = [y.max(), y.min(), x.mean(), x.std() or 1.0]
    if stats.pearsonr(x, y).statistic < 0:  # a decreasing trend starts from a decreasing curve
        p0[0], p0[1] = p0[1], p0[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic4, x, y, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, FloatingPointError):
        return None
    if not np.all(np.isfinite(params)) or np.ptp(logistic4(x, *params)) == 0:
        return None
    return params


def correlations(pred: Sequence[float], gt: Sequence[float]) -> dict[str, float | bool | None]:
    """``srcc``, ``plcc``, ``plcc_logistic``, ``krcc`` of ``pred`` against ``gt`` (None where undefined),
    plus ``logistic_fallback``: True when the logistic fit failed and ``plcc_logistic`` is the raw PLCC."""
    x, y = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pred and gt must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("pred and gt must be finite; drop unparsed predictions before correlating")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**dict.fromkeys(METRIC_KEYS), "logistic_fallback": False}
    plcc = float(stats.pearsonr(x, y).statistic)
    params = fit_logistic(x, y)
    plcc_logistic = plcc if params is None else float(stats.pearsonr(logistic4(x, *params), y).statistic)
    return {
        "srcc": float(stats.spearmanr(x, y).statistic),
        "plcc": plcc,
        "plcc_logistic": plcc_logistic,
        "krcc": float(stats.kendalltau(x, y, variant="b").statistic),
        "logistic_fallback": params is None,
    }


# ------------------------------------------------------------------------ per benchmark and per task
class Prediction(BaseModel):
    """One scored test image: the ground truth next to the model's raw text and its strictly parsed answer."""

    model_config = ConfigDict(extra="forbid")

    id: str
    benchmark: str
    task: Task
    image: str
    score_100: float  # ground truth on 0-100
    pred: float | None  # the single number inside the last <answer>; None = parse failure (never remapped)
    think_words: int
    raw: str  # the generated text as decoded, kept for failures and audits


class Summary(BaseModel):
    """Metrics of one benchmark, or of one task (correlations averaged over its benchmarks, as papers do)."""

    task: Task
    n: int
    parse_failures: int
    parse_failure_rate: float
    srcc: float | None
    plcc: float | None
    plcc_logistic: float | None
    krcc: float | None
    logistic_fallback: bool
    mean_think_words: float
    images_per_s: float | None  # None when no time was measured
    seconds: float
    # How much the parsed predictions vary: a model that ignores the image answers one number for every image.
    distinct_predictions: int = 0
    prediction_std: float | None = None  # on 0-100; None when nothing parsed

    @property
    def spread_note(self) -> str | None:
        """In words, when predictions are constant or nearly so (the reason behind an n/a SRCC); else None."""
        parsed = self.n - self.parse_failures
        if parsed == 0:
            return "no answer parsed: correlations are undefined"
        if self.distinct_predictions == 1:
            return (f"constant predictions: all {parsed} parsed answers are the same number, so SRCC/PLCC are "
                    "undefined (the model ignores the image)")
        if self.prediction_std is not None and self.prediction_std < NEAR_CONSTANT_STD:
            return (f"nearly constant predictions: {self.distinct_predictions} distinct values, std "
                    f"{self.prediction_std:.2f} on 0-100; the correlations rest on a few small differences")
        return None


def summarise(predictions: Sequence[Prediction], seconds: float) -> Summary:
    """Metrics of one benchmark; correlations use the parsed predictions, failures are counted, not dropped."""
    if not predictions:
        raise ValueError("cannot summarise an empty benchmark")
    parsed = [p for p in predictions if p.pred is not None]
    n = len(predictions)
    return Summary(
        task=predictions[0].task,
        n=n,
        parse_failures=n - len(parsed),
        parse_failure_rate=(n - len(parsed)) / n,
        **correlations([p.pred for p in parsed], [p.score_100 for p in parsed]),
        mean_think_words=float(np.mean([p.think_words for p in predictions])),
        images_per_s=n / seconds if seconds > 0 else None,
        seconds=seconds,
        distinct_predictions=len({p.pred for p in parsed}),
        prediction_std=float(np.std([p.pred for p in parsed])) if parsed else None,
    )


def summarise_task(summaries: Sequence[Summary]) -> Summary:
    """One task's row: counts and speed pooled, each correlation the mean over benchmarks where it is defined."""
    n = sum(s.n for s in summaries)
    failures = sum(s.parse_failures for s in summaries)
    seconds = sum(s.seconds for s in summaries)

    def mean_of(key: str) -> float | None:
        values = [getattr(s, key) for s in summaries if getattr(s, key) is not None]
        return float(np.mean(values)) if values else None

    return Summary(
        task=summaries[0].task,
        n=n,
        parse_failures=failures,
        parse_failure_rate=failures / n,
        **{key: mean_of(key) for key in METRIC_KEYS},
        logistic_fallback=any(s.logistic_fallback for s in summaries),
        mean_think_words=sum(s.mean_think_words * s.n for s in summaries) / n,
        images_per_s=n / seconds if seconds > 0 else None,
        seconds=seconds,
        # The least varied benchmark speaks for the task: one constant benchmark is worth a note.
        distinct_predictions=min(s.distinct_predictions for s in summaries),
        prediction_std=min((s.prediction_std for s in summaries if s.prediction_std is not None), default=None),
    )


class EvalMetrics(BaseModel):
    """The content of ``data/eval/metrics.json`` (a DVC metric: ``dvc metrics diff`` compares runs)."""

    checkpoint: str
    readout: Readout = "greedy"  # eval.readout
    benchmarks: dict[str, Summary]
    tasks: dict[str, Summary]
    skipped: dict[str, str]  # benchmark -> why (only with eval.skip_missing)
    # benchmark -> distortion -> SRCC, for benchmarks whose file names say the distortion (tatar.evaluation.distortions)
    distortions: dict[str, dict[str, DistortionSummary]] = {}

    @classmethod
    def collect(cls, checkpoint: str, benchmarks: dict[str, Summary], skipped: dict[str, str],
                readout: Readout = "greedy",
                distortions: dict[str, dict[str, DistortionSummary]] | None = None) -> EvalMetrics:
        by_task: dict[str, list[Summary]] = {}
        for summary in benchmarks.values():
            by_task.setdefault(summary.task, []).append(summary)
        tasks = {task: summarise_task(by_task[task]) for task in TASKS if task in by_task}
        return cls(checkpoint=checkpoint, readout=readout, benchmarks=benchmarks, tasks=tasks, skipped=skipped,
                   distortions={name: rows for name, rows in (distortions or {}).items() if rows})
