"""Stage grpo: TRL's GRPOTrainer from the SFT checkpoint with task-routed asymmetric rewards.

IQA rows are rewarded by format + adaptive Gaussian score, IAA rows by format + Thurstone completion ranking
(``grpo.rewards_iqa`` / ``grpo.rewards_iaa``). The ranking compares the IAA images of one generation batch, so the
train order is built here: the tasks are interleaved in blocks of ``prompts_per_generation`` images, each block
holding at least two IAA images, and TRL's sampler keeps that order (``shuffle_dataset=False``) while repeating
each prompt G times.

``launch`` in params.yaml decides where it trains (tatar.training.launch): ``launch: {config: zero3,
num_processes: 8}`` makes ``tatar stage grpo`` start ``accelerate launch`` itself. On several processes every
reward sees its own slice of the generation batch; the ranking gathers the whole batch
(``tatar.rewards.gather_rows``), so a prompt's G completions may straddle processes.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

from tatar.config import GRPOConfig, Params
from tatar.errors import ConfigValueError, InvalidDataError, MissingInputError
from tatar.prompts import prompt_messages
from tatar.records import ManifestRecord, read_records, write_json

MANIFEST = Path("data/manifests/train.jsonl")
SFT_DIR = Path("data/models/sft")
OUT_DIR = Path("data/models/grpo")
LOG_FILE = "grpo_log.json"  # training facts and the logged reward means, kept inside the checkpoint


def mixed_order(tasks: Sequence[str], block: int, seed: int = 0, min_iaa: int = 2) -> list[int]:
    """Indices into ``tasks``, in blocks of ``block`` (one generation batch each) that mix the tasks in their
    overall proportion with at least ``min_iaa`` IAA rows whenever there are IAA rows.

    Each task is drawn from its own shuffled stream and a stream wraps around when it runs out, so every record
    appears at least once per epoch and every block is complete (TRL's sampler drops an incomplete one); the
    smaller share repeats a few records rather than leave a block without a ranking signal."""
    rng = random.Random(seed)
    by_task = {t: [i for i, x in enumerate(tasks) if x == t] for t in ("iqa", "iaa")}
    by_task = {t: ids for t, ids in by_task.items() if ids}
    if not by_task:
        raise InvalidDataError("grpo: no training records")
    if len(by_task) == 1:
        quota = {t: block for t in by_task}
    else:
        share = len(by_task["iaa"]) / len(tasks)
        quota = {"iaa": min(max(round(block * share), min_iaa), block - 1)}
        quota["iqa"] = block - quota["iaa"]
    if "iaa" in quota and quota["iaa"] < min_iaa or "iqa" in quota and quota["iqa"] < 1:
        raise ConfigValueError(f"grpo.prompts_per_generation={block}: a generation batch must hold >= {min_iaa} IAA "
                         f"image(s){' and >= 1 IQA image' if len(by_task) == 2 else ''} for the ranking; raise it")
    n_blocks = max(math.ceil(len(by_task[t]) / quota[t]) for t in quota)
    streams = {}
    for t, ids in by_task.items():
        rng.shuffle(ids)
        need = n_blocks * quota[t]
        streams[t] = (ids * math.ceil(need / len(ids)))[:need]
    order = []
    for b in range(n_blocks):
        chunk = [i for t in quota for i in streams[t][b * quota[t]:(b + 1) * quota[t]]]
        rng.shuffle(chunk)
        order += chunk
    return order


def build_dataset(records: Sequence[ManifestRecord], order: Sequence[int]):
    """TRL prompt dataset: conversational ``prompt`` + ``image``, and the columns the rewards read
    (``task``, ``score_100``, ``id``)."""
    from datasets import Dataset, Image

    for r in records:
        if not r.path.is_file():
            raise MissingInputError(f"{MANIFEST}: record {r.id}: image {r.path} not found (re-run stage prepare)")
    rows = [records[i] for i in order]
    data = {
        "prompt": [prompt_messages(r.task) for r in rows],
        "image": [str(r.path) for r in rows],
        "task": [r.task for r in rows],
        "score_100": [float(r.score_100) for r in rows],
        "id": [r.id for r in rows],
    }
    return Dataset.from_dict(data).cast_column("image", Image())


def load_manifest(cfg: GRPOConfig, path: Path = MANIFEST) -> list[ManifestRecord]:
    """Train records of the tasks that have at least one reward (a task without rewards has no signal)."""
    if not path.is_file():
        raise MissingInputError(f"{path}: no train manifest (run stage prepare first)")
    rewarded = {t for t, table in (("iqa", cfg.rewards_iqa), ("iaa", cfg.rewards_iaa)) if table}
    records = [r for r in read_records(path, ManifestRecord) if r.task in rewarded]
    if not records:
        raise InvalidDataError(f"{path}: no records of a rewarded task ({', '.join(sorted(rewarded)) or 'none'})")
    return records


def uses_ranking(cfg: GRPOConfig) -> bool:
    return "thurstone_rank" in cfg.rewards_iqa or "thurstone_rank" in cfg.rewards_iaa


# ----------------------------------------------------------------------------------------- training
def trainer_args(cfg: GRPOConfig, work_dir: Path, reward_weights: list[float]):
    from trl import GRPOConfig as TrlGRPOConfig

    from tatar.training.common import shared_trainer_args

    return TrlGRPOConfig(
        output_dir=str(work_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        beta=cfg.beta,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        # One generation batch = prompts_per_generation images x G completions, across all processes; TRL checks
        # that it divides into per-device batches.
        generation_batch_size=cfg.prompts_per_generation * cfg.num_generations,
        shuffle_dataset=False,  # keep the task-mixed blocks of mixed_order
        reward_weights=reward_weights,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
        vllm_max_model_length=cfg.vllm_max_model_length,
        vllm_server_host=cfg.vllm_server_host,
        vllm_server_port=cfg.vllm_server_port,
        log_completions=cfg.log_completions,
        **shared_trainer_args(cfg, work_dir),
    )


def run_key(params: Params) -> dict:
    """What defines a training run: a change here starts a fresh work dir instead of resuming."""
    from tatar.hashing import sha256_file, tree_hash

    ignore = {"logging_steps", "save_steps", "save_total_limit", "report_to", "log_completions"}
    return {"grpo": params.grpo.model_dump(exclude=ignore), "model": params.model.model_dump(),
            "launch": params.launch.model_dump(exclude={"machine_rank"}),
            "manifest": sha256_file(MANIFEST), "sft": tree_hash(SFT_DIR)}


def train(params: Params, dataset, work_dir: Path, out_dir: Path) -> dict:
    """GRPO from the SFT checkpoint; saves the result to ``out_dir`` and returns training facts."""

    from trl import GRPOTrainer

    from tatar.modeling import load_from_config
    from tatar.rewards import build_reward_funcs
    from tatar.training import launch
    from tatar.training.common import fit, peft_lora_config, save_checkpoint, training_dtype
    from tatar.training.curves import attach
    from tatar.training.vision import freeze_vision

    cfg = params.grpo
    reward_funcs, weights = build_reward_funcs(cfg)
    # Built before the model so that under DeepSpeed ZeRO-3 the weights load straight into their shards.
    args = trainer_args(cfg, work_dir, weights)
    dtype = training_dtype(params.model.torch_dtype, cfg.lora.enabled, args.bf16)
    model, processor = load_from_config(SFT_DIR, params.model, dtype=dtype)
    if cfg.freeze_vision:
        freeze_vision(model)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                          processing_class=processor, peft_config=peft_lora_config(cfg.lora))
    curves = attach(trainer, "grpo", cfg.heldout, processor)
    result, resume, seconds = fit(trainer, work_dir, "grpo")
    curves.restore_best(trainer.model)
    kind = save_checkpoint(trainer, processor, out_dir, cfg.lora)
    return {"checkpoint": kind, "steps": result.global_step, "seconds": seconds, "heldout": curves.summary(seconds),
            "resumed_from": resume, "reward_funcs": {f.__name__: w for f, w in zip(reward_funcs, weights)},
            "log": [entry for entry in trainer.state.log_history if any(k.startswith("rewards/") for k in entry)],
            "launch": launch.describe(trainer, params.launch), "is_main_process": trainer.accelerator.is_main_process}


# ------------------------------------------------------------------------------------------ reports
def task_table(facts: dict) -> str:
    """Per-task reward means, parse rate and think words: first and last logged generation batch."""
    log = facts["log"]
    if not log:
        return "No generation batch was logged."
    keys = [f"rewards/{name}/mean" for name in facts["reward_funcs"]]
    keys += [f"{task}/{stat}" for task in ("iqa", "iaa") for stat in ("parse_rate", "think_words")]
    rows = ["| metric | first logged | last logged |", "|---|---|---|"]
    for key in keys:
        seen = [entry[key] for entry in log if key in entry]
        if seen:
            rows.append(f"| {key} | {seen[0]:.4g} | {seen[-1]:.4g} |")
    return "\n".join(rows)


def model_card(out_dir: Path, params: Params, facts: dict, started_from: dict, counts: dict) -> None:
    from tatar.lineage_view import launch_summary
    from tatar.training.common import how_to_load, write_model_card

    cfg = params.grpo
    load = how_to_load(out_dir, facts["checkpoint"])
    rewards = "; ".join(f"`{name}` x {w}" for name, w in facts["reward_funcs"].items())
    write_model_card(out_dir, "TATAR GRPO checkpoint", {
        "stage": "grpo (TRL GRPOTrainer)",
        "started from": f"`{started_from['checkpoint']}` (lineage.json sha256 `{started_from['lineage_sha256']}`)",
        "weights": facts["checkpoint"],
        "train images": ", ".join(f"{t} {n}" for t, n in counts.items()),
        "rewards (task/name x weight)": rewards,
        "G / beta / lr / epochs / max completion": f"{cfg.num_generations} / {cfg.beta} / {cfg.learning_rate} / "
                                                   f"{cfg.epochs} / {cfg.max_completion_length} tokens",
        "images per generation batch": cfg.prompts_per_generation,
        "temperature / loss_type / scale_rewards / grad accumulation / IAA min words":
            f"{cfg.temperature} / {cfg.loss_type} / {cfg.scale_rewards} / {cfg.gradient_accumulation_steps} / "
            f"{cfg.min_words_iaa or 'off'}",
        "steps": facts["steps"],
        "trained with": launch_summary(facts["launch"]),
        "lineage": "`lineage.json` (train manifest and SFT checkpoint hashes, params, packages, git commit)",
    }, {"How to load": load, "Rewards and contract by task": task_table(facts)})


def started_from(sft_dir: Path = SFT_DIR) -> dict:
    """The SFT checkpoint this run starts from, named by its lineage hash (``tatar lineage`` follows it)."""
    from tatar.hashing import sha256_file

    lineage = sft_dir / "lineage.json"
    if not lineage.is_file():
        raise MissingInputError(f"{lineage}: the SFT checkpoint has no lineage (run stage sft first)")
    return {"checkpoint": str(sft_dir), "lineage_sha256": sha256_file(lineage),
            "created_at": json.loads(lineage.read_text()).get("created_at")}


def run(params: Params) -> None:
    """Stage grpo: train manifest + SFT checkpoint -> ``data/models/grpo`` (checkpoint, card, log, lineage last)."""
    from tatar.modeling import ModelLoadError

    try:
        _run(params)
    except ModelLoadError as exc:
        raise SystemExit(f"grpo: {exc}") from None


def _run(params: Params) -> None:
    from tatar.lineage import write_lineage
    from tatar.lineage_view import launch_summary
    from tatar.modeling import resolve_model
    from tatar.training import launch
    from tatar.training.common import finish_checkpoint, run_dir, use_bf16

    cfg = params.grpo
    origin = started_from()
    records = load_manifest(cfg)
    order = mixed_order([r.task for r in records], cfg.prompts_per_generation, cfg.seed,
                        min_iaa=2 if uses_ranking(cfg) else 1)
    counts = {t: sum(r.task == t for r in records) for t in ("iqa", "iaa")}
    print(f"grpo: {counts['iqa']} IQA + {counts['iaa']} IAA train images -> {len(order)} prompts per epoch in "
          f"generation batches of {cfg.prompts_per_generation} images x {cfg.num_generations} completions")
    work_dir = run_dir("grpo", run_key(params))
    if not launch.is_launched("grpo"):
        shutil.rmtree(OUT_DIR, ignore_errors=True)
    facts = launch.train("grpo", params, work_dir, use_bf16(cfg.bf16),
                         lambda: train(params, build_dataset(records, order), work_dir, OUT_DIR))
    if facts is None:  # a launched process, or a node other than rank 0's: the stage's own process finishes
        return
    finish_checkpoint(OUT_DIR, cfg.lora, resolve_model(SFT_DIR))
    print(f"grpo: trained with {launch_summary(facts['launch'])}")
    write_json(OUT_DIR / LOG_FILE, facts)
    model_card(OUT_DIR, params, facts, origin, counts)
    write_lineage(OUT_DIR, "grpo", inputs={"train_manifest": MANIFEST, "sft_checkpoint": SFT_DIR},
                  params={"model": params.model.model_dump(), "launch": params.launch.model_dump(),
                          "grpo": cfg.model_dump()},
                  extra={"started_from": origin, "training": {k: v for k, v in facts.items() if k != "log"}})
    shutil.rmtree(work_dir, ignore_errors=True)  # finished: nothing left to resume
    print(task_table(facts))
    from tatar.training.curves import report_line

    print(report_line("grpo", facts["heldout"]))
    print(f"grpo: saved {facts['checkpoint']} checkpoint to {OUT_DIR} ({facts['steps']} steps, {facts['seconds']} s)")
