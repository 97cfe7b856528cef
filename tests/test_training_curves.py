"""Training curves through dvclive and held-out scoring during SFT (tatar.training.curves), on a fixture corpus."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from sft_fixtures import write_corpus, write_test_manifests

from tatar.config import HeldOutConfig, Params
from tatar.records import ManifestRecord, read_records, write_jsonl
from tatar.training import curves as curves_module
from tatar.training.common import fit
from tatar.training.curves import attach, mean_srcc, report_line


def test_mean_srcc_counts_a_task_without_a_ranking_as_zero():
    assert mean_srcc({"val/iqa/parse_rate": 1.0, "val/iqa/srcc": 0.6, "val/iaa/parse_rate": 0.0}) == 0.3
    assert mean_srcc({}) is None


@pytest.mark.slow
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


class _Interrupt(Exception):
    pass


def _trainer(work_dir, kill_after_log_at: int | None = None, heldout: HeldOutConfig = HeldOutConfig(eval_steps=2)):
    """A plain transformers Trainer on a one-weight model (4 steps, a checkpoint every 2) with the stage's curves
    attached; the optional killer raises right after step ``kill_after_log_at`` is logged, before a checkpoint."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return {"loss": ((self.w - x) ** 2).mean()}

    class Killer(TrainerCallback):
        def on_log(self, args, state, control, **kwargs):
            if state.global_step == kill_after_log_at:
                raise _Interrupt

    args = TrainingArguments(output_dir=str(work_dir), max_steps=4, save_steps=2, logging_steps=1, learning_rate=0.1,
                             per_device_train_batch_size=1, use_cpu=True, report_to="none", disable_tqdm=True)
    trainer = Trainer(model=Model(), args=args, train_dataset=[{"x": torch.tensor([1.0])}] * 4)
    attach(trainer, "sft", heldout, processor=None)
    trainer.add_callback(Killer())
    return trainer


def _steps(tsv) -> list[int]:
    with tsv.open() as fh:
        return [int(r["step"]) for r in csv.DictReader(fh, delimiter="\t")]


@pytest.mark.parametrize("dvc_deletes_outputs", [True, False])
def test_resumed_run_keeps_every_curve_point_once(tmp_path, monkeypatch, dvc_deletes_outputs):
    monkeypatch.chdir(tmp_path)
    write_jsonl(Path("data/manifests/val.jsonl"), [ManifestRecord(
        id="v/1.jpg", image="1.jpg", root="v", task="iqa", dataset="v", split="train", score=1, score_100=1,
        sha256="0" * 64)])
    # Held-out scoring stubbed (every 2 steps): the validation curves must survive a resume too.
    monkeypatch.setattr(curves_module, "heldout_scores", lambda model, *_: {"val/iqa/srcc": model.w.item()})
    work_dir, live_dir = Path(".tatar/runs/sft/key"), Path("data/curves/sft")

    with pytest.raises(_Interrupt):  # killed once step 3 is logged: checkpoint-2 is the newest
        fit(_trainer(work_dir, kill_after_log_at=3), work_dir, "sft")
    assert _steps(live_dir / "plots/metrics/loss.tsv") == [1, 2, 3]
    if dvc_deletes_outputs:  # as `dvc repro` does before it re-runs the stage
        shutil.rmtree(live_dir)

    _, resumed_from, _ = fit(_trainer(work_dir), work_dir, "sft")
    assert resumed_from.endswith("checkpoint-2")
    plots = live_dir / "plots/metrics"
    assert _steps(plots / "loss.tsv") == [1, 2, 3, 4]  # the points before the checkpoint are back, step 3 once
    assert _steps(plots / "learning_rate.tsv") == [1, 2, 3, 4]
    assert _steps(plots / "val/iqa/srcc.tsv") == [2, 4]
    summary = json.loads((live_dir / "metrics.json").read_text())
    assert summary["step"] == 4 and "srcc" in summary["val"]["iqa"]


@pytest.mark.parametrize("score_sign, best_step, evaluations", [
    (-1, 1, 4),  # best before the checkpoint resumed from: kept across the resume, its weights restored
    (+1, 4, 4),  # best at step 3 of the interrupted run, after checkpoint-2: dropped, found again on the replay
])
def test_best_heldout_step_survives_a_resume(tmp_path, monkeypatch, score_sign, best_step, evaluations):
    monkeypatch.chdir(tmp_path)
    write_jsonl(Path("data/manifests/val.jsonl"), [ManifestRecord(
        id="v/1.jpg", image="1.jpg", root="v", task="iqa", dataset="v", split="train", score=1, score_100=1,
        sha256="0" * 64)])
    # The weight grows every step, so the score is best at the first evaluation (-1) or the last (+1).
    monkeypatch.setattr(curves_module, "heldout_scores", lambda model, *_: {
        "val/iqa/parse_rate": 1.0, "val/iqa/srcc": score_sign * model.w.item()})
    work_dir, heldout = Path(".tatar/runs/sft/key"), HeldOutConfig(eval_steps=1, save_best=True)
    with pytest.raises(_Interrupt):
        fit(_trainer(work_dir, kill_after_log_at=3, heldout=heldout), work_dir, "sft")

    trainer = _trainer(work_dir, heldout=heldout)
    curves = next(c for c in trainer.callback_handler.callbacks if isinstance(c, curves_module.TrainingCurves))
    fit(trainer, work_dir, "sft")
    best = curves.restore_best(trainer.model)
    assert best["step"] == best_step and curves.summary(1.0)["evaluations"] == evaluations
    assert trainer.model.w.item() == pytest.approx(score_sign * best["mean_srcc"], abs=1e-4)  # that step's weights
