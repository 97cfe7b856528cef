"""Stage sft: supervised fine-tuning on the validated corpus with TRL's ``SFTTrainer``.

What makes it TATAR's SFT:
- asymmetric thought dropout: an IQA target loses its ``<think>`` (answer only) with probability
  ``sft.think_dropout.iqa`` (high), an IAA target with ``sft.think_dropout.iaa`` (0): IQA learns to answer fast,
  IAA keeps its deliberation. Drawn per example and per pass over the data, seeded.
- IQA and IAA interleaved: every example is IQA with probability ``sft.p_iqa``, so batches mix the tasks and the
  token-mean loss weighs every token alike. ``sft.batch_by_task`` draws the task per micro-batch instead: no short
  IQA answer padded to an IAA narrative's length; tokens still weigh alike across the micro-batches of one
  optimiser step (gradient accumulation), but each task is weighed per batch without it.
- loss on the assistant turn only (TRL's prompt-completion rows), so the prompt and the image tokens never count.

Trainer checkpoints go to ``.tatar/runs/sft/<key>`` and an interrupted run resumes from the newest one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from tatar.config import Params, SFTConfig
from tatar.errors import TatarError
from tatar.hashing import sha256_file, tree_hash
from tatar.lineage import write_lineage
from tatar.modeling import BASE_DIR, ModelLoadError, load_from_config, resolve_model
from tatar.parsing import format_target, parse_answer, think_words
from tatar.prompts import completion_messages, prompt_messages
from tatar.records import (
    ManifestRecord,
    RationaleRecord,
    Task,
    describe_teachers,
    read_records,
    teachers_of,
    write_json,
)
from tatar.training.soft_scores import SoftScoreLabels

CORPUS = Path("data/corpus/corpus.jsonl")
OUT_DIR = Path("data/models/sft")
TEST_MANIFESTS = {"iqa": Path("data/manifests/test/synthetic_iqa.jsonl"),
                  "iaa": Path("data/manifests/test/synthetic_iaa.jsonl")}
CHECK_FILE = "sft_check.json"
TASKS: tuple[Task, ...] = ("iqa", "iaa")


# ----------------------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class Example:
    record: RationaleRecord
    target: str
    think_dropped: bool


def sft_target(record: RationaleRecord, drop_think: bool) -> str:
    return format_target(None, float(record.answer)) if drop_think else record.text


def build_examples(records: list[RationaleRecord], cfg: SFTConfig) -> list[Example]:
    """The training stream: ``epochs x len(records)`` examples, IQA drawn with probability ``p_iqa`` per example
    (with ``batch_by_task``: per micro-batch, see ``step_tasks``), each task's records reshuffled on every pass,
    thought dropout drawn per example. Same records + seed -> same stream, which is what makes resuming from a
    checkpoint exact. Data-parallel processes take consecutive micro-batches, so each one stays one task."""
    rng = random.Random(cfg.seed)
    pools = {t: [r for r in records if r.task == t] for t in TASKS}
    present = [t for t in TASKS if pools[t]]
    if not present:
        raise ValueError("sft: the corpus holds no records")
    queues: dict[str, list[RationaleRecord]] = {t: [] for t in present}
    examples, plan = [], []
    block, per_step = (cfg.per_device_batch_size, cfg.gradient_accumulation_steps) if cfg.batch_by_task else (1, 1)
    for i in range(max(1, round(cfg.epochs * len(records)))):
        if i % block == 0:  # one task: no draw, so its stream is the same whatever p_iqa says
            plan = plan or (present * per_step if len(present) == 1 else step_tasks(rng, cfg.p_iqa, per_step))
            task = plan.pop()
        if not queues[task]:
            queues[task] = rng.sample(pools[task], len(pools[task]))
        record = queues[task].pop()
        drop = rng.random() < getattr(cfg.think_dropout, task)
        examples.append(Example(record, sft_target(record, drop), drop))
    return examples


def step_tasks(rng: random.Random, p_iqa: float, micro_batches: int) -> list[str]:
    """The tasks of one optimiser step's micro-batches, ``p_iqa`` of them IQA (rounded at random), in random order.

    With ``batch_by_task`` and gradient accumulation an IQA and an IAA micro-batch share a step: the trainer divides
    the step's loss by all its label tokens, so tokens weigh as in one mixed batch, without padding ~10 answer
    tokens to a ~400-token narrative. One micro-batch per step weighs a short IQA batch's tokens ~40x an IAA one."""
    k = int(p_iqa * micro_batches)
    k += rng.random() < p_iqa * micro_batches - k
    tasks = ["iqa"] * k + ["iaa"] * (micro_batches - k)
    rng.shuffle(tasks)
    return tasks


class CorpusError(TatarError):
    """The SFT corpus is missing or a record cannot be trained on."""


def load_corpus(path: Path = CORPUS) -> list[RationaleRecord]:
    if not path.is_file():
        raise CorpusError(f"{path}: no corpus (run stages rationales and validate first)")
    records = read_records(path, RationaleRecord)
    if not records:
        raise CorpusError(f"{path}: the corpus holds no records (see data/corpus/rejected.jsonl)")
    for r in records:
        if not r.path.is_file():
            raise CorpusError(f"{path}: record {r.id!r}: image {r.path} not found")
        if parse_answer(f"<answer>{r.answer}</answer>") is None:
            raise CorpusError(f"{path}: record {r.id!r}: answer {r.answer!r} is not a number")
    return records


def to_dataset(examples: list[Example]):
    """A ``datasets.Dataset`` in TRL's conversational vision form; images decode lazily, batch by batch."""
    from datasets import Dataset, Image

    # Prompt-completion rows: TRL's loss on the completion alone needs no chat-template assistant masks, which for
    # vision datasets need transformers >= 5.18 (the GPU stack's vLLM caps it below).
    rows = [{"prompt": prompt_messages(e.record.task), "completion": completion_messages(e.target),
             "image": str(e.record.path), "id": e.record.id, "task": e.record.task} for e in examples]
    return Dataset.from_list(rows).cast_column("image", Image())


def dropout_summary(examples: list[Example]) -> dict[str, dict[str, float]]:
    out = {}
    for t in TASKS:
        ex = [e for e in examples if e.record.task == t]
        if ex:
            out[t] = {"examples": len(ex), "think_dropped": round(sum(e.think_dropped for e in ex) / len(ex), 3)}
    return out


# ----------------------------------------------------------------------------------------- training
def trainer_args(cfg: SFTConfig, work_dir: Path):
    from trl import SFTConfig as TrlSFTConfig

    from tatar.training.common import shared_trainer_args

    return TrlSFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=1,  # the epochs are already laid out in the example stream (build_examples)
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,  # a fraction < 1 is a share of the total steps (transformers 5)
        train_sampling_strategy="sequential",  # keep the interleaved order build_examples drew
        completion_only_loss=True,  # the loss on the assistant's turn: prompt and image tokens never count
        max_length=cfg.max_length,
        dataset_kwargs={"skip_prepare_dataset": True},
        **shared_trainer_args(cfg, work_dir),
    )


def trainer_class(cfg: SFTConfig):
    """TRL's ``SFTTrainer`` with the loss divided by every label token of the optimiser step, or where
    ``sft.lm_head`` says plain (``auto``: on a CPU) one that also applies the LM head at labelled positions only
    (``answer_token_loss``): TRL's tiled LM head keeps GPU memory flat on large vocabularies but makes a CPU step of
    the tiny model ~2.6x slower (``tatar bench lm-head``). The plain loss logs no entropy, token accuracy or token
    count. ``sft.score_sigma`` > 0 takes the plain loss on any device: its soft labels need the logits of the
    answers' tens digits, which the tiled head never materialises (a few rows per example: little GPU memory)."""
    from trl import SFTTrainer

    from tatar.training.common import cuda_available

    class TokenWeightedSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Qwen2.5-VL declares accepts_loss_kwargs False, so Trainer would average each micro-batch on its own
            # and an IQA micro-batch's ~10 answer tokens would weigh like an IAA one's ~400. Both loss paths here
            # divide by num_items_in_batch themselves (never passed to the model); Trainer then counts the label
            # tokens of all the step's micro-batches. Sequence parallelism counts its own (Trainer sets False).
            pc = getattr(self.accelerator, "parallelism_config", None)
            self.model_accepts_loss_kwargs = not (pc is not None and pc.sp_enabled)

    if not cfg.score_sigma and (cfg.lm_head == "tiled" or (cfg.lm_head == "auto" and cuda_available())):
        return TokenWeightedSFTTrainer

    class PlainLossSFTTrainer(TokenWeightedSFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
            self.soft_scores = SoftScoreLabels(tokenizer, cfg.score_sigma) if cfg.score_sigma else None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = answer_token_loss(model, inputs, num_items_in_batch, self.soft_scores)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as Trainer: DDP averages it
            return (loss, outputs) if return_outputs else loss

    return PlainLossSFTTrainer


def answer_token_loss(model, inputs: dict, num_items_in_batch=None, soft: SoftScoreLabels | None = None):
    """The model's causal-LM loss, with the LM head applied only where a label is: a mixed batch's prompts and
    padding (and all but ~10 positions of an IQA example) never reach the vocabulary projection. Same value as
    ``model(**inputs).loss`` (tested); sum over label tokens / ``num_items_in_batch`` when the trainer counts them.
    With ``soft``, answers' tens digits learn soft labels (``sft.score_sigma``)."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]  # position t predicts token t+1
    keep = targets != -100
    outputs = logits_at(model, {k: v for k, v in inputs.items() if k != "labels"}, keep)
    if soft is not None:
        loss = soft.loss(outputs.logits, targets, keep)
    else:
        loss = F.cross_entropy(outputs.logits.float(), targets[keep].to(outputs.logits.device), reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1)), outputs


def logits_at(model, inputs: dict, keep):
    """The model's outputs with ``logits`` at the ``keep`` positions only, flattened to (positions, vocab).
    transformers >= 5.18 slices by a boolean ``logits_to_keep`` itself; before (the GPU stack's transformers), the
    LM head is applied here to the final hidden states (post-norm: transformers ties the last to them). Either way
    through ``model`` itself, whatever wraps it (DDP, DeepSpeed)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401 - present when masks are sliced
    except ImportError:
        outputs = model(**inputs, use_cache=False, logits_to_keep=1, output_hidden_states=True)
        head = getattr(model, "module", model).get_output_embeddings()
        outputs.logits = head(outputs.hidden_states[-1][keep])
        return outputs
    return model(**inputs, use_cache=False, logits_to_keep=keep)


def run_key(params: Params, corpus: Path, base_dir: Path) -> dict:
    """What defines a training run: a change here starts a fresh work dir instead of resuming."""
    ignore = {"logging_steps", "save_steps", "save_total_limit", "report_to", "check_samples",
              "check_max_new_tokens", "lm_head"}
    return {"sft": params.sft.model_dump(exclude=ignore), "model": params.model.model_dump(),
            "launch": params.launch.model_dump(exclude={"machine_rank"}),
            "corpus": sha256_file(corpus), "base": tree_hash(base_dir)}


def train(params: Params, examples: list[Example], work_dir: Path, out_dir: Path, on_trainer=None) -> dict:
    """Fine-tune the base model on ``examples``, save the checkpoint to ``out_dir``; returns training facts.

    ``on_trainer(trainer, processor)``, when given, inspects the ready trainer before training (``tatar overfit``)."""
    from tatar.training import launch
    from tatar.training.common import fit, peft_lora_config, save_checkpoint, training_dtype
    from tatar.training.curves import attach
    from tatar.training.vision import freeze_vision, warm_up_vision

    cfg = params.sft
    # Built before the model so that under DeepSpeed ZeRO-3 the weights load straight into their shards.
    args = trainer_args(cfg, work_dir)
    dtype = training_dtype(params.model.torch_dtype, cfg.lora.enabled, args.bf16)
    model, processor = load_from_config(BASE_DIR, params.model, dtype=dtype)
    warmup = None
    # Also when resuming: the warm-up is seeded, so it rebuilds the same tower (a LoRA checkpoint does not hold it).
    if cfg.vision_warmup.steps:
        if params.model.base != "tiny":
            print(f"sft: WARNING sft.vision_warmup re-fits the vision tower of {params.model.base} to the IQA MOS "
                  "before training; meant for a random tower (set sft.vision_warmup.steps: 0 otherwise)")
        warmup = warm_up_vision(model, processor, [e.record for e in examples], cfg.vision_warmup, cfg.seed)
    if cfg.freeze_vision:
        freeze_vision(model)
    trainer = trainer_class(cfg)(model=model, args=args, train_dataset=to_dataset(examples),
                                 processing_class=processor, peft_config=peft_lora_config(cfg.lora))
    curves = attach(trainer, "sft", cfg.heldout, processor)
    if on_trainer:
        on_trainer(trainer, processor)
    result, resume, seconds = fit(trainer, work_dir, "sft")
    curves.restore_best(trainer.model)
    kind = save_checkpoint(trainer, processor, out_dir, cfg.lora)
    return {"checkpoint": kind, "steps": result.global_step, "train_loss": round(result.training_loss, 4),
            "seconds": seconds, "resumed_from": resume, "heldout": curves.summary(seconds), "vision_warmup": warmup,
            "launch": launch.describe(trainer, params.launch), "is_main_process": trainer.accelerator.is_main_process}


# ------------------------------------------------------------------------------------------- checks
def contract_check(checkpoint: Path, params: Params) -> dict[str, dict]:
    """Greedy answers on up to ``check_samples`` synthetic test images per task: parse rate and think length.

    Reloads the saved checkpoint, so the check also proves it loads with the Auto classes."""
    from tatar.inference import generate
    from tatar.training.common import cuda_available

    cfg = params.sft
    manifests = {t: read_records(p, ManifestRecord)[: cfg.check_samples]
                 for t, p in TEST_MANIFESTS.items() if p.is_file() and cfg.check_samples > 0}
    if not any(manifests.values()):
        return {}
    model, processor = load_from_config(checkpoint, params.model, device="cuda" if cuda_available() else None)
    report = {}
    for task, records in manifests.items():
        if not records:
            continue
        texts = generate(model, processor, [r.path for r in records], task, batch_size=8,
                         max_new_tokens=cfg.check_max_new_tokens)
        report[task] = {
            "samples": len(texts),
            "parse_rate": round(sum(parse_answer(t) is not None for t in texts) / len(texts), 4),
            "mean_think_words": round(sum(think_words(t) for t in texts) / len(texts), 1),
            "with_think": round(sum("<think>" in t for t in texts) / len(texts), 4),
            "example": texts[0],
        }
    return report


def check_table(report: dict[str, dict]) -> str:
    if not report:
        return "No synthetic test manifests were found; no generations were checked."
    rows = ["| task | samples | parse rate | mean think words | with think |", "|---|---|---|---|---|"]
    rows += [f"| {t} | {r['samples']} | {r['parse_rate']:.2f} | {r['mean_think_words']:.1f} | {r['with_think']:.2f} |"
             for t, r in report.items()]
    return "\n".join(rows)


def model_card(out_dir: Path, params: Params, facts: dict, summary: dict, report: dict) -> None:
    from tatar.lineage_view import launch_summary
    from tatar.training.common import how_to_load, write_model_card

    cfg = params.sft
    load = how_to_load(out_dir, facts["checkpoint"])
    write_model_card(out_dir, "TATAR SFT checkpoint", {
        "stage": "sft (TRL SFTTrainer, assistant-only loss)",
        "base model": f"`{params.model.base}`",
        "weights": facts["checkpoint"],
        "thought dropout": f"IQA {cfg.think_dropout.iqa}, IAA {cfg.think_dropout.iaa} "
                           f"(drawn: {json.dumps(summary)})",
        "task mixing": f"p_iqa = {cfg.p_iqa}",
        "vision tower": ("warmed up on IQA MOS ({steps} steps, SRCC {train_srcc} on {images} images), "
                         .format(**facts["vision_warmup"]) if facts.get("vision_warmup") else "")
                        + ("frozen through SFT" if cfg.freeze_vision else "trained with the rest"),
        "teachers": describe_teachers(facts.get("teachers", {})),
        "steps / train loss": f"{facts['steps']} / {facts['train_loss']}",
        "trained with": launch_summary(facts["launch"]),
        "lineage": "`lineage.json` (corpus and base hashes, params, packages, git commit)",
    }, {"How to load": load, "Greedy check on synthetic test images": check_table(report)})


def run(params: Params) -> None:
    """Stage sft: corpus + base model -> ``data/models/sft`` (checkpoint, model card, check, lineage last)."""
    records = load_corpus()
    examples = build_examples(records, params.sft)
    summary = dropout_summary(examples)
    print(f"sft: {len(records)} corpus records -> {len(examples)} examples; {json.dumps(summary)}")
    from tatar.lineage_view import launch_summary
    from tatar.training import launch
    from tatar.training.common import finish_checkpoint, use_bf16
    from tatar.training.curves import report_line

    work_dir = run_dir_for(params)
    if not launch.is_launched("sft"):
        shutil.rmtree(OUT_DIR, ignore_errors=True)
    facts = launch.train("sft", params, work_dir, use_bf16(params.sft.bf16),
                         lambda: train(params, examples, work_dir, OUT_DIR))
    if facts is None:  # a launched process, or a node other than rank 0's: the stage's own process finishes
        return
    finish_checkpoint(OUT_DIR, params.sft.lora, resolve_model(BASE_DIR))
    facts["teachers"] = teachers_of(records)  # who wrote the corpus, per task (model card and lineage)
    print(f"sft: trained with {launch_summary(facts['launch'])}")
    print(report_line("sft", facts["heldout"]))
    report = contract_check(OUT_DIR, params)
    for task, r in report.items():
        print(f"sft check {task}: parse rate {r['parse_rate']:.2f} on {r['samples']} images, "
              f"mean think words {r['mean_think_words']:.1f}, with think {r['with_think']:.2f}")
    write_json(OUT_DIR / CHECK_FILE, {"training": facts, "dropout": summary, "generations": report})
    model_card(OUT_DIR, params, facts, summary, report)
    write_lineage(OUT_DIR, "sft", inputs={"corpus": CORPUS, "base_model": BASE_DIR},
                  params={"model": params.model.model_dump(), "launch": params.launch.model_dump(),
                          "sft": params.sft.model_dump()},
                  extra={"training": facts})
    shutil.rmtree(work_dir, ignore_errors=True)  # finished: nothing left to resume
    print(f"sft: saved {facts['checkpoint']} checkpoint to {OUT_DIR} ({facts['steps']} steps, {facts['seconds']} s)")


def run_dir_for(params: Params) -> Path:
    from tatar.training.common import run_dir

    if not BASE_DIR.exists():
        raise ModelLoadError(f"{BASE_DIR}: no base model (run stage base_model first)")
    return run_dir("sft", run_key(params, CORPUS, BASE_DIR))
