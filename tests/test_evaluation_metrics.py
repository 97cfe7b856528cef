"""tatar.evaluation.correlations against scipy, on ties, on a known logistic curve, and on degenerate input."""

import json

import numpy as np
import pytest
from scipy import stats

from tatar.evaluation import correlations
from tatar.evaluation.metrics import fit_logistic, logistic4


def test_matches_scipy_on_random_data():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, 500)
    pred = gt + rng.normal(0, 25, 500)
    got = correlations(pred, gt)
    assert got["srcc"] == pytest.approx(stats.spearmanr(pred, gt).statistic)
    assert got["plcc"] == pytest.approx(stats.pearsonr(pred, gt).statistic)
    assert got["krcc"] == pytest.approx(stats.kendalltau(pred, gt).statistic)
    assert 0.5 < got["srcc"] < 0.9
    # The logistic map is fitted by least squares, so it cannot correlate worse than the identity by much.
    assert got["plcc_logistic"] >= got["plcc"] - 1e-3
    assert got["logistic_fallback"] is False


def test_ava_like_heavy_ties_use_average_ranks_and_tau_b():
    rng = np.random.default_rng(1)
    gt = np.round(rng.normal(5.4, 0.7, 4000), 1)  # a few dozen distinct labels over thousands of images
    pred = np.round(gt + rng.normal(0, 1.0, 4000))  # predictions tie heavily too (integer answers)
    assert len(np.unique(gt)) < 60 and len(np.unique(pred)) < 15
    got = correlations(pred, gt)
    # Tie-aware SRCC is Pearson on average ranks; ordinal ranks (ties broken by position) would differ.
    avg = stats.pearsonr(stats.rankdata(pred), stats.rankdata(gt)).statistic
    ordinal = stats.pearsonr(stats.rankdata(pred, "ordinal"), stats.rankdata(gt, "ordinal")).statistic
    assert got["srcc"] == pytest.approx(avg)
    assert abs(avg - ordinal) > 1e-3
    assert got["krcc"] == pytest.approx(stats.kendalltau(pred, gt, variant="b").statistic)
    assert got["krcc"] != pytest.approx(stats.kendalltau(pred, gt, variant="c").statistic)


def test_logistic_fit_recovers_a_known_curve():
    rng = np.random.default_rng(2)
    pred = rng.uniform(0, 100, 400)
    gt = logistic4(pred, 9.0, 1.0, 55.0, 7.0) + rng.normal(0, 0.05, 400)  # a 1-10 scale, sigmoidal
    b1, b2, b3, b4 = fit_logistic(pred, gt)
    assert (b1, b2, b3, abs(b4)) == pytest.approx((9.0, 1.0, 55.0, 7.0), rel=0.02)
    got = correlations(pred, gt)
    assert got["plcc_logistic"] > 0.999
    assert got["plcc"] < 0.97  # the raw PLCC pays for the curve


def test_failed_fit_falls_back_to_raw_plcc_and_says_so(monkeypatch):
    from tatar.evaluation import metrics

    def diverge(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(metrics.optimize, "curve_fit", diverge)
    got = correlations([1, 2, 3, 5, 4], [10, 20, 30, 40, 50])
    assert got["logistic_fallback"] is True
    assert got["plcc_logistic"] == got["plcc"]


@pytest.mark.parametrize("pred, gt", [
    ([50.0] * 6, [1, 2, 3, 4, 5, 6]),  # a model that always answers the same
    ([1, 2, 3, 4, 5, 6], [7.0] * 6),  # a constant ground truth
    ([42.0], [3.0]),  # a single parsed prediction
    ([], []),
])
def test_undefined_correlations_are_none_not_zero(pred, gt):
    got = correlations(pred, gt)
    assert {k: got[k] for k in ("srcc", "plcc", "plcc_logistic", "krcc")} == dict.fromkeys(
        ("srcc", "plcc", "plcc_logistic", "krcc"))
    assert json.loads(json.dumps(got))["srcc"] is None  # null in metrics.json


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="equal length"):
        correlations([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        correlations([1, float("nan"), 3], [1, 2, 3])
