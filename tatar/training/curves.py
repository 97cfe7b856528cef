"""Training curves the DVC way: SFT and GRPO log through ``dvclive`` into ``data/curves/<stage>/``, which dvc.yaml
declares as the stage's metrics (``metrics.json``: the last value of every curve, shown by ``dvc exp show``) and
plots (``plots/metrics/**.tsv``: one file per curve, drawn by ``dvc plots show``).

The logger is transformers' ``DVCLiveCallback`` (the trainer's loss, learning rate, GRPO's per-task rewards,
parse rate and think words) given a ``Live`` that neither edits dvc.yaml nor saves a DVC experiment of its own
(the stage runs inside ``dvc repro`` / ``dvc exp run``, which own that). Its x axis is the optimiser step.

DVC deletes the stage's outputs before it re-runs, so a run resuming from a trainer checkpoint redraws the curves
from step 0 out of the checkpoint's log history (``trainer_state.json``, which also records the held-out scores)
before it trains on; points logged after that checkpoint are not in it and are logged again, once.

Every ``heldout.eval_steps`` and after the last step, the held-out validation split (``data/manifests/val.jsonl``,
drawn by prepare) is scored greedily with the model being trained: SRCC, PLCC, parse rate and mean think words per
task, logged as ``val/<task>/<metric>`` on the same curves. The time it takes is measured and reported by the
stage. With ``heldout.save_best`` the weights of the step with the best mean validation SRCC are written to the
run's work dir (``heldout-best/``) and restored before the checkpoint is saved; a resumed run keeps that best when it
is no later than the step it resumes from (a later one came from the interrupted trajectory, which it replays).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from transformers.integrations import DVCLiveCallback

from tatar.config import HeldOutConfig
from tatar.errors import ConfigValueError
from tatar.records import ManifestRecord, read_records

CURVES_DIR = Path("data/curves")
VAL_MANIFEST = Path("data/manifests/val.jsonl")
TASKS = ("iqa", "iaa")
BEST_DIR = "heldout-best"  # in the trainer's output dir (the run's work dir, removed once the stage has saved)


def heldout_scores(model, processor, records: list[ManifestRecord], cfg: HeldOutConfig,
                   trainer=None) -> dict[str, float]:
    """``val/<task>/{srcc,plcc,parse_rate,think_words}`` of greedy answers on ``records``. A correlation that is
    undefined (constant predictions, fewer than two parsed answers) is logged as 0: such answers rank nothing, and a
    curve with gaps would leave the metric out of ``dvc exp show`` exactly when it matters.

    With ``trainer``, every process calls this: each answers its share of ``records`` with the weights gathered the
    way TRL gathers them for generation (whole under ZeRO-3), and all of them get the same scores back."""
    from tatar.evaluation.metrics import correlations
    from tatar.inference import generate
    from tatar.parsing import parse_answer, think_words

    def answer(model, rows):
        # One generate call over both tasks: greedy decoding runs until the longest answer (an IAA narrative) ends,
        # so scoring the tasks apart would pay for that length twice.
        return generate(model, processor, [r.path for r in rows], [r.task for r in rows],
                        batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens) if rows else []

    if trainer is None or trainer.accelerator.num_processes == 1 and not trainer.is_deepspeed_enabled:
        texts = answer(model, records)
    else:
        from accelerate.utils import gather_object
        from trl.models.utils import unwrap_model_for_generation

        acc = trainer.accelerator
        mine = list(range(acc.process_index, len(records), acc.num_processes))
        with unwrap_model_for_generation(trainer.model_wrapped, acc, gather_deepspeed3_params=True) as unwrapped:
            answered = answer(unwrapped, [records[i] for i in mine])
        texts = [t for _, t in sorted(gather_object(list(zip(mine, answered))))]
    out: dict[str, float] = {}
    for task in TASKS:
        rows = [(r, t) for r, t in zip(records, texts) if r.task == task]
        if not rows:
            continue
        preds = [(parse_answer(t), r.score_100) for r, t in rows]
        parsed = [(p, gt) for p, gt in preds if p is not None]
        out[f"val/{task}/parse_rate"] = len(parsed) / len(rows)
        out[f"val/{task}/think_words"] = sum(think_words(t) for _, t in rows) / len(rows)
        corr = correlations([p for p, _ in parsed], [gt for _, gt in parsed])
        out.update({f"val/{task}/{k}": corr[k] or 0.0 for k in ("srcc", "plcc")})
    return out


def mean_srcc(scores: dict[str, float]) -> float | None:
    """Mean validation SRCC over the tasks scored."""
    tasks = [t for t in TASKS if f"val/{t}/parse_rate" in scores]
    return sum(scores.get(f"val/{t}/srcc", 0.0) for t in tasks) / len(tasks) if tasks else None


class TrainingCurves(DVCLiveCallback):
    """DVCLive logging at the optimiser step, plus held-out scoring every ``eval_steps``."""

    def __init__(self, stage: str, cfg: HeldOutConfig, processor, val_records: list[ManifestRecord],
                 live_dir: Path | None = None, trainer=None):
        from dvclive import Live

        self.live_dir = live_dir or CURVES_DIR / stage
        # Always a fresh folder: a resumed run redraws its earlier points in on_train_begin. dvclive's own resume
        # (append to the files there) cannot: DVC has deleted them, and it would repeat the points logged after
        # the checkpoint.
        # The main process alone: a Live clears its folder when it starts, under the feet of the one writing there.
        main = trainer is None or trainer.accelerator.is_main_process
        live = Live(dir=str(self.live_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None) if main \
            else None
        super().__init__(live=live)
        self.stage, self.cfg, self.processor, self.val, self.trainer = stage, cfg, processor, val_records, trainer
        self.pending: dict[str, float] = {}
        self.seconds = 0.0  # spent scoring the held-out split
        self.evaluations = 0
        self.best: dict | None = None  # {"step", "mean_srcc"} of the best evaluation so far
        self.best_dir: Path | None = None

    def setup(self, args, state, model):
        # Unlike transformers' callback, no params.yaml dump of the TrainingArguments: DVC tracks params.yaml.
        self._initialized = True

    def _due(self, state) -> bool:
        every = self.cfg.eval_steps
        return bool(self.val) and every > 0 and (state.global_step % every == 0 or state.global_step >= state.max_steps)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Every process scores and logs alike: a log is a collective under DeepSpeed, and ranks that took different
        # branches here would wait on each other forever.
        if not self._due(state):
            return control
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            self.pending = heldout_scores(model, self.processor, self.val, self.cfg, self.trainer)
        finally:
            model.train(was_training)
        self.evaluations += 1
        score = mean_srcc(self.pending)
        if self.cfg.save_best and score is not None and (self.best is None or score > self.best["mean_srcc"]):
            self.best = {"step": state.global_step, "mean_srcc": round(score, 4)}
            if state.is_world_process_zero:  # the weights are whole on every process (save_best is off under ZeRO-3)
                self._save_best(model, self.best)
        self.seconds += time.perf_counter() - start
        control.should_log = True  # log the scores at this step, next to the training values
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.best_dir = Path(args.output_dir) / BEST_DIR
        if not state.log_history:
            return
        # Resumed: the checkpoint's points up to its step, and the evaluations and best step among them.
        if state.is_world_process_zero:
            for entry in state.log_history:
                self._log(entry["step"], {k: v for k, v in entry.items() if k != "step"})
            self.live.make_summary()
        self.evaluations = sum(any(k.startswith("val/") for k in entry) for entry in state.log_history)
        saved = self.best_dir / "best.json"
        best = json.loads(saved.read_text()) if self.cfg.save_best and saved.is_file() else None
        if best is not None and best["step"] <= state.global_step:
            self.best = best
        elif state.is_world_process_zero:
            shutil.rmtree(self.best_dir, ignore_errors=True)

    def _save_best(self, model, best: dict) -> None:
        """Weights first, then best.json naming them: a crash in between leaves the previous best's json over
        weights that are at least as good, never a json without its weights."""
        import torch

        from tatar.atomic_write import atomic_path, write_text

        self.best_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.best_dir / "weights.pt") as tmp:
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        write_text(self.best_dir / "best.json", json.dumps(best))

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if self.pending and state.log_history:
            # Trainer.log appended this step's entry just before: the next checkpoint keeps the scores for a resume.
            state.log_history[-1].update(self.pending)
        logs = {**(logs or {}), **self.pending}
        self.pending = {}
        if state.is_world_process_zero:
            self._log(state.global_step, logs)
            self.live.next_step()

    def _log(self, step: int, logs: dict) -> None:
        """Log ``logs`` at ``step`` under the names transformers' callback gives them (``train_x`` -> ``train/x``)."""
        from dvclive.plots import Metric
        from dvclive.utils import standardize_metric_name

        self.live.step = step
        for key, value in logs.items():
            if Metric.could_log(value):
                self.live.log_metric(standardize_metric_name(key, "dvclive.huggingface"), value)

    def restore_best(self, model) -> dict | None:
        """With ``save_best``: load the best step's weights into ``model`` (before it is saved); returns
        {"step", "mean_srcc"} for lineage, or None."""
        if self.best is None:
            return None
        import torch

        model.load_state_dict(torch.load(self.best_dir / "weights.pt", weights_only=True))
        return self.best

    def summary(self, train_seconds: float) -> dict:
        """What the stage prints and records: evaluations, seconds, and the time they added as a share of the
        training time without them (``train_seconds`` includes them)."""
        rest = train_seconds - self.seconds
        share = self.seconds / rest if rest > 0 else None
        return {"evaluations": self.evaluations, "images": len(self.val), "seconds": round(self.seconds, 1),
                "share_of_training": None if share is None else round(share, 3), "best": self.best,
                "curves": str(self.live_dir)}


def attach(trainer, stage: str, cfg: HeldOutConfig, processor) -> TrainingCurves:
    """Add the curves callback to ``trainer``; the validation split is read from prepare's val.jsonl. A run that
    resumes from a trainer checkpoint redraws the curves up to that checkpoint's step first."""
    val = read_records(VAL_MANIFEST, ManifestRecord) if VAL_MANIFEST.is_file() and cfg.eval_steps > 0 else []
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if val and cfg.save_best and plugin is not None and plugin.zero_stage == 3:
        raise ConfigValueError(f"{stage}.heldout.save_best: not supported under DeepSpeed ZeRO-3, whose weights are "
                               "sharded across the processes; set it to false or use zero2 or ddp")
    curves = TrainingCurves(stage, cfg, processor, val, trainer=trainer)
    trainer.add_callback(curves)
    return curves


def report_line(stage: str, summary: dict) -> str:
    if not summary["evaluations"]:
        return f"{stage}: held-out scoring off (heldout.eval_steps = 0 or no data/manifests/val.jsonl)"
    share = summary["share_of_training"]
    return (f"{stage}: held-out scoring of {summary['images']} images x {summary['evaluations']} evaluation(s) added "
            f"{summary['seconds']} s" + ("" if share is None else f" (+{share:.1%} on the training time)")
            + f"; curves in {summary['curves']}")
