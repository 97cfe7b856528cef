"""Metrics per benchmark/task, strict parsing at the eval level, and the report, plots and plot data."""

import csv

import numpy as np
import pytest

from tatar.evaluation.metrics import EvalMetrics, Prediction, summarise
from tatar.evaluation.report import markdown_report, published_name, write_report
from tatar.parsing import parse_answer, think_words


def predictions(benchmark, task, texts, gts):
    return [Prediction(id=f"{benchmark}/{i}", benchmark=benchmark, task=task, image=f"{i}.png", score_100=gt,
                       pred=parse_answer(text), think_words=think_words(text), raw=text)
            for i, (text, gt) in enumerate(zip(texts, gts))]


@pytest.mark.parametrize("text, expected", [
    ("<think>sharp</think>\n<answer>72.50</answer>", 72.5),
    ("<answer>3.0</answer>", 3.0),  # an IQA answer of 3 is 3 on 0-100, never remapped to 50
    ("<answer>10</answer> then <answer>64</answer>", 64.0),  # the last <answer> counts
    ("<answer> 55.5 </answer>", 55.5),
    ("<answer>about 70</answer>", None),
    ("<answer>70/100</answer>", None),
    ("<answer>60 70</answer>", None),
    ("<answer></answer>", None),
    ("<think>no answer at all</think>", None),
    ("<answer>72.5", None),  # unclosed
    ("<answer>130</answer>", None),  # off the 0-100 scale: a failure, never clipped to 100
    ("<answer>-4</answer>", None),
    ("", None),
])
def test_parsing_edge_cases_become_failures_not_guesses(text, expected):
    (p,) = predictions("b", "iqa", [text], [50.0])
    assert p.pred == expected


def test_failures_are_counted_kept_and_left_out_of_correlations():
    texts = ["<answer>10</answer>", "<answer>20</answer>", "<answer>oops</answer>", "<answer>40</answer>", "junk"]
    preds = predictions("b", "iqa", texts, [10, 30, 20, 40, 50])
    s = summarise(preds, seconds=2.0)
    assert (s.n, s.parse_failures, s.parse_failure_rate) == (5, 2, 0.4)
    assert s.srcc == pytest.approx(1.0)  # on the three parsed: (10,10) (20,30) (40,40)
    assert s.images_per_s == 2.5


def test_constant_predictions_give_undefined_correlations_in_metrics_and_report():
    preds = predictions("const", "iaa", ["<think>a b c</think>\n<answer>50</answer>"] * 4, [10, 20, 30, 40])
    metrics = EvalMetrics.collect("ckpt", {"const": summarise(preds, 1.0)}, skipped={})
    assert metrics.benchmarks["const"].srcc is None and metrics.tasks["iaa"].srcc is None
    assert metrics.tasks["iaa"].mean_think_words == 3
    assert "n/a" in markdown_report(metrics)
    assert metrics.benchmarks["const"].distinct_predictions == 1
    assert "constant predictions: all 4 parsed answers are the same number" in markdown_report(metrics)


def test_nearly_constant_predictions_are_named_and_varied_ones_are_not():
    from tatar.evaluation.report import spread_notes

    near = predictions("near", "iqa", [f"<answer>{50 + 0.1 * i:.2f}</answer>" for i in range(4)], [10, 20, 30, 40])
    varied = predictions("varied", "iqa", [f"<answer>{10 * i:.2f}</answer>" for i in range(4)], [10, 20, 30, 40])
    metrics = EvalMetrics.collect("ckpt", {"near": summarise(near, 1.0), "varied": summarise(varied, 1.0)}, {})
    assert metrics.benchmarks["near"].srcc == pytest.approx(1.0)  # defined, but resting on 0.1-point differences
    notes = spread_notes(metrics)
    assert len(notes) == 1 and notes[0].startswith("near: nearly constant predictions: 4 distinct values, std 0.11")


def test_task_rows_average_benchmarks_and_pool_counts():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, 30)
    # On the scale: an answer off 0-100 would be a parse failure.
    good = predictions("a", "iqa", [f"<answer>{np.clip(g + rng.normal(0, 5), 0, 100):.2f}</answer>" for g in gt], gt)
    bad = predictions("b", "iqa", [f"<answer>{rng.uniform(0, 100):.2f}</answer>" for _ in gt] + ["x"], [*gt, 1])
    metrics = EvalMetrics.collect("ckpt", {"a": summarise(good, 1.0), "b": summarise(bad, 2.0)}, skipped={})
    task = metrics.tasks["iqa"]
    assert task.srcc == pytest.approx((metrics.benchmarks["a"].srcc + metrics.benchmarks["b"].srcc) / 2)
    assert (task.n, task.parse_failures, task.images_per_s) == (61, 1, pytest.approx(61 / 3))


@pytest.mark.parametrize("name, column", [("koniq", "KonIQ"), ("KonIQ-10K", "KonIQ"), ("kadid10k", "KADID"),
                                          ("ava", "AVA"), ("flickr_aes", "FLICKR-AES"), ("artimuse", "ArtiMuse-10K"),
                                          ("synthetic_iqa", None)])
def test_benchmark_names_map_to_published_columns(name, column):
    assert published_name(name) == column


def test_report_plots_and_dvc_plot_data(tmp_path):
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 100, 20)
    iqa = predictions("koniq", "iqa", [f"<think>{'w ' * 12}</think>\n<answer>{g:.2f}</answer>" for g in gt], gt)
    iaa = predictions("synthetic_iaa", "iaa", [f"<think>{'w ' * 95}</think>\n<answer>{100 - g:.2f}</answer>"
                                                for g in gt] + ["<answer>?</answer>"], [*gt, 50])
    preds = {"koniq": iqa, "synthetic_iaa": iaa}
    metrics = EvalMetrics.collect("data/models/grpo", {k: summarise(v, 1.0) for k, v in preds.items()},
                                  skipped={"ava": "manifest data/manifests/test/ava.jsonl not found"})
    write_report(preds, metrics, tmp_path)

    report = (tmp_path / "report.md").read_text()
    ours = next(line for line in report.splitlines() if line.startswith("| **this run**"))
    assert "1.000 / 1.000" in ours.split("|")[2]  # KonIQ column: SRCC / PLCC of this run
    assert "TATAR (paper" in report and "0.941" in report and "ava" in report and "1 (4.8%)" in report
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "scatter_koniq.png", "scatter_synthetic_iaa.png", "think_words_iqa.png", "think_words_iaa.png"}
    assert (tmp_path / "plots" / "scatter_koniq.png").read_bytes()[:4] == b"\x89PNG"

    scatter = list(csv.DictReader((tmp_path / "scatter.csv").open()))
    assert len(scatter) == 40  # parsed predictions only
    bins = list(csv.DictReader((tmp_path / "think_words.csv").open()))
    counts = {(r["task"], int(r["think_words"])): int(r["count"]) for r in bins}
    assert counts[("iqa", 10)] == 20 and counts[("iaa", 90)] == 20 and counts[("iaa", 0)] == 1
    assert sum(c for (task, _), c in counts.items() if task == "iaa") == 21
    assert [r["bin"] for r in bins if r["task"] == "iqa"] == ["iqa 010-019"]  # from the shortest bin, padded
