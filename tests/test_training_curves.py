"""Training curves through dvclive and held-out scoring during SFT (tatar.training.curves), on a fixture corpus."""

import csv
import json
import shutil

import pytest
from sft_fixtures import write_corpus, write_test_manifests

from tatar.config import HeldOutConfig, Params
from tatar.records import ManifestRecord, read_records, write_jsonl
from tatar.training.curves import mean_srcc, report_line

pytestmark = pytest.mark.slow


def test_mean_srcc_counts_a_task_without_a_ranking_as_zero():
    assert mean_srcc({"val/iqa/parse_rate": 1.0, "val/iqa/srcc": 0.6, "val/iaa/parse_rate": 0.0}) == 0.3
    assert mean_srcc({}) is None


def test_sft_logs_curves_and_heldout_scores_that_dvc_plots_can_read(tmp_path, monkeypatch, tiny_model_dir, capsys):
    from tatar.training import sft

    shutil.copytree(tiny_model_dir, tmp_path / "data/models/base")
    write_corpus(tmp_path, n_per_task=8)
    write_test_manifests(tmp_path, n_per_task=3)
    # The held-out split: the fixture's test images stand in for what prepare draws (scores spread for SRCC).
    val = [r.model_copy(update={"split": "train", "score_100": 20.0 + 30 * i})
           for p in sorted((tmp_path / "data/manifests/test").glob("*.jsonl"))
           for i, r in enumerate(read_records(p, ManifestRecord))]
    write_jsonl(tmp_path / "data/manifests/val.jsonl", val)
    monkeypatch.chdir(tmp_path)
    heldout = HeldOutConfig(eval_steps=2, batch_size=4, max_new_tokens=24, save_best=True)
    sft.run(Params.model_validate({"sft": {"epochs": 1, "learning_rate": 5e-3, "per_device_batch_size": 4,
                                           "logging_steps": 1, "save_steps": 1000, "check_samples": 0,
                                           "heldout": heldout.model_dump()}}))

    curves = tmp_path / "data/curves/sft"
    summary = json.loads((curves / "metrics.json").read_text())
    assert summary["step"] == 4  # 16 examples / batch 4: the x axis is the optimiser step
    for task in ("iqa", "iaa"):
        assert set(summary["val"][task]) == {"srcc", "plcc", "parse_rate", "think_words"}
    plots = curves / "plots/metrics"
    with (plots / "loss.tsv").open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and {"step", "loss"} <= set(rows[0])
    with (plots / "val/iqa/parse_rate.tsv").open() as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh, delimiter="\t")] == [2, 4]  # every eval_steps, and last

    lineage = json.loads((tmp_path / "data/models/sft/lineage.json").read_text())
    recorded = lineage["training"]["heldout"]
    assert recorded["evaluations"] == 2 and recorded["images"] == 6 and recorded["seconds"] > 0
    assert recorded["best"] is None or recorded["best"]["step"] in (2, 4)  # save_best: the step kept
    assert report_line("sft", recorded) in capsys.readouterr().out
