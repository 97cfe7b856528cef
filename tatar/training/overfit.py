"""``tatar overfit``: the sanity check to run before a long training job.

Fine-tune the configured base model on a handful of corpus records (``overfit.records`` per task, the same SFT
code path: prompts, assistant-only masking, thought dropout, score format), then score the same images greedily.
A set-up that cannot memorise 32 images will not learn from 30,000: when a task stays below
``overfit.min_srcc`` the command exits 1 and prints what it checked (visual tokens per image, which tokens
carry the loss, whether labels line up with images, how the tokenizer spells a score).

``--shuffle-labels`` deliberately breaks the set-up (targets permuted across images) to see the check fail.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tatar.config import Params
from tatar.errors import TatarError
from tatar.records import RationaleRecord, Task

WORK_DIR = Path(".tatar/overfit")


class OverfitError(TatarError):
    """The overfit check cannot start (e.g. the corpus lacks a task it is asked to check)."""


@dataclass
class TaskResult:
    task: Task
    images: int
    parse_rate: float
    srcc: float | None
    plcc: float | None
    distinct_predictions: int


@dataclass
class OverfitResult:
    steps: int
    seconds: float
    tasks: dict[str, TaskResult]
    diagnostics: dict[str, str] = field(default_factory=dict)

    def failed(self, min_srcc: float) -> list[str]:
        return [t for t, r in self.tasks.items() if r.srcc is None or r.srcc < min_srcc]

    def summary_line(self) -> str:
        parts = ", ".join(f"{t} SRCC {'n/a' if r.srcc is None else f'{r.srcc:.2f}'}" for t, r in self.tasks.items())
        n = sum(r.images for r in self.tasks.values())
        return f"overfit: {parts} on {n} images in {self.seconds:.0f} s"


def pick_records(corpus: list[RationaleRecord], tasks: list[Task], n: int, seed: int) -> list[RationaleRecord]:
    """Up to ``n`` records per task, spread over the score range (sorted by score, every k-th), so the
    correlation is measured on a real spread rather than on a few near-equal labels."""
    picked = []
    for task in tasks:
        pool = sorted((r for r in corpus if r.task == task), key=lambda r: (r.score_100, r.id))
        if not pool:
            raise OverfitError(f"the corpus holds no {task} records (overfit.tasks lists it)")
        step = max(1, len(pool) // n)
        offset = random.Random(seed).randrange(step)
        picked += pool[offset::step][:n]
    return picked


def shuffle_labels(records: list[RationaleRecord], seed: int) -> list[RationaleRecord]:
    """The deliberately broken set-up: each image gets another image's target (rationale and score), per task."""
    rng = random.Random(seed)
    out = []
    for task in sorted({r.task for r in records}):
        group = [r for r in records if r.task == task]
        targets = rng.sample(group, len(group))
        out += [r.model_copy(update={"think": t.think, "answer": t.answer})
                for r, t in zip(group, targets, strict=True)]
    return out


def diagnostics(trainer, processor, records: list[RationaleRecord]) -> dict[str, str]:
    """What a failing overfit most often comes from, measured on the first training batch."""
    tokenizer = processor.tokenizer
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(min(4, len(trainer.train_dataset)))])
    ids, labels = batch["input_ids"], batch["labels"]
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    image_tokens = (ids == image_id).sum(dim=1).tolist()
    trained = labels != -100
    on_images = int((trained & (ids == image_id)).sum())
    answer = tokenizer.tokenize(f"<answer>{records[0].answer}</answer>")
    mismatched = [r.id for r in records if abs(float(r.answer) - r.score_100) > 0.01]
    return {
        "image tokens per image": f"{image_tokens} (a few tokens cannot show blur or noise; raise model.min_pixels)",
        "loss tokens": f"{int(trained.sum())} of {int((batch['attention_mask'] == 1).sum())} in the first batch, "
                       f"{on_images} on image tokens (should be 0: loss on the assistant answer only)",
        "labels aligned": "yes" if not mismatched else
                          f"NO: {len(mismatched)} targets differ from their image's score, e.g. {mismatched[0]}",
        "score format": f"{records[0].answer!r} is {len(answer)} tokens {answer} "
                        "(the first score token should carry the ranking)",
    }


def score_images(checkpoint: Path, params: Params, records: list[RationaleRecord]) -> dict[str, TaskResult]:
    from tatar.evaluation.metrics import correlations
    from tatar.inference import generate
    from tatar.modeling import load_from_config
    from tatar.parsing import parse_answer
    from tatar.training.common import cuda_available

    model, processor = load_from_config(checkpoint, params.model, device="cuda" if cuda_available() else None)
    results = {}
    for task in dict.fromkeys(r.task for r in records):
        group = [r for r in records if r.task == task]
        texts = generate(model, processor, [r.path for r in group], task, batch_size=params.eval.batch_size,
                         max_new_tokens=params.overfit.max_new_tokens)
        pairs = [(p, r.score_100) for p, r in zip(map(parse_answer, texts), group, strict=True) if p is not None]
        corr = correlations([p for p, _ in pairs], [g for _, g in pairs]) if len(pairs) >= 2 else {}
        results[task] = TaskResult(task, len(group), len(pairs) / len(group), corr.get("srcc"), corr.get("plcc"),
                                   len({p for p, _ in pairs}))
    return results


def run_overfit(params: Params, records: list[RationaleRecord], work_dir: Path = WORK_DIR) -> OverfitResult:
    """Train on ``records`` with the SFT code path and the ``overfit`` schedule; score the same images."""
    from tatar.training import sft

    cfg = params.overfit
    warmup = params.sft.vision_warmup
    if cfg.vision_warmup_steps is not None:
        warmup = warmup.model_copy(update={"steps": cfg.vision_warmup_steps})
    train_params = params.model_copy(update={"sft": params.sft.model_copy(update={
        "epochs": cfg.epochs, "learning_rate": cfg.learning_rate, "max_steps": -1, "save_steps": 10**9,
        "check_samples": 0, "logging_steps": max(1, params.sft.logging_steps), "vision_warmup": warmup})})
    shutil.rmtree(work_dir, ignore_errors=True)  # never resume: every overfit starts from the base model
    examples = sft.build_examples(records, train_params.sft)
    found: dict[str, str] = {}
    start = time.perf_counter()
    facts = sft.train(train_params, examples, work_dir / "trainer", work_dir / "model",
                      on_trainer=lambda trainer, processor: found.update(diagnostics(trainer, processor, records)))
    tasks = score_images(work_dir / "model", params, records)
    return OverfitResult(facts["steps"], time.perf_counter() - start, tasks, found)


def run(params: Params, shuffle: bool = False) -> OverfitResult:
    """The CLI body: pick records, train, score, print per task and the one-line verdict."""
    from tatar.training.sft import load_corpus

    cfg = params.overfit
    records = pick_records(load_corpus(), cfg.tasks, cfg.records, cfg.seed)
    if shuffle:
        records = shuffle_labels(records, cfg.seed)
    print(f"overfit: {len(records)} corpus records ({', '.join(cfg.tasks)}), {cfg.epochs:g} epochs at lr "
          f"{cfg.learning_rate:g}{', labels SHUFFLED across images' if shuffle else ''}")
    result = run_overfit(params, records)
    for t, r in result.tasks.items():
        srcc = "n/a" if r.srcc is None else f"{r.srcc:.3f}"
        plcc = "n/a" if r.plcc is None else f"{r.plcc:.3f}"
        print(f"overfit {t}: {result.steps} steps, {result.seconds:.0f} s, parse rate {r.parse_rate:.2f}, "
              f"SRCC {srcc}, PLCC {plcc} on {r.images} images ({r.distinct_predictions} distinct predictions)")
    failed = result.failed(cfg.min_srcc)
    if failed:
        print(f"overfit: FAILED - {', '.join(failed)} below SRCC {cfg.min_srcc} on its own training images. "
              "Likely causes, as measured:")
        for name, value in result.diagnostics.items():
            print(f"  - {name}: {value}")
    print(result.summary_line())
    return result
