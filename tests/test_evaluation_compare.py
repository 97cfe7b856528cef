"""The evaluation report's "better or worse?" table: this run, the run committed at HEAD, the paper."""

import json
import subprocess

from tatar.evaluation.compare import comparison_table, previous_metrics
from tatar.evaluation.metrics import EvalMetrics, Prediction, summarise
from tatar.evaluation.report import markdown_report


def metrics(preds_by_benchmark: dict[str, list[float]]) -> EvalMetrics:
    gts = [10.0, 30.0, 20.0, 40.0, 50.0]
    summaries = {}
    for name, preds in preds_by_benchmark.items():
        rows = [Prediction(id=f"{name}/{i}", benchmark=name, task="iqa", image=f"{i}.png", score_100=gt, pred=p,
                           think_words=0, raw="") for i, (p, gt) in enumerate(zip(preds, gts))]
        summaries[name] = summarise(rows, seconds=1.0)
    return EvalMetrics.collect("data/models/grpo", summaries, {})


def git(root, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout


def test_previous_run_is_read_from_head_and_compared_per_benchmark(tmp_path):
    git(tmp_path, "init", "-q")
    assert previous_metrics(tmp_path) is None  # no commit yet: no previous run, no error
    before = metrics({"KonIQ-10K": [10, 20, 30, 40, 50]})
    (tmp_path / "data/eval").mkdir(parents=True)
    (tmp_path / "data/eval/metrics.json").write_text(json.dumps(before.model_dump(mode="json")))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "run 1")
    label, prev = previous_metrics(tmp_path)
    assert label.startswith("HEAD ") and prev["benchmarks"]["KonIQ-10K"]["srcc"] == before.benchmarks["KonIQ-10K"].srcc

    now = metrics({"KonIQ-10K": [10, 30, 20, 40, 50], "synthetic_iqa": [10, 30, 20, 40, 50]})
    table = comparison_table(now, (label, prev))
    koniq = next(line for line in table.splitlines() if line.startswith("| KonIQ-10K "))
    cells = [c.strip() for c in koniq.strip("|").split("|")]
    assert cells[1:4] == ["1.000", "0.900", "+0.100"]  # SRCC now, before, change
    assert cells[-2:] == ["0.941", "-"]  # the paper's KonIQ SRCC; its PLCC is not in the table's source row
    synthetic = next(line for line in table.splitlines() if line.startswith("| synthetic_iqa "))
    assert "| - | - |" in synthetic  # no previous number, no published one
    assert "Better or worse?" in markdown_report(now, (label, prev))


def test_without_a_previous_run_the_report_says_so():
    assert "No previous run" in comparison_table(metrics({"b": [1, 2, 3, 4, 5]}), None)
