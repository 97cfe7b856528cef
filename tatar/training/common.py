"""What SFT and GRPO share: hardware switches, the LoRA config, the resumable work folder and saving a checkpoint
(weights + processor + model card; the caller writes ``lineage.json`` last)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from tatar.atomic_write import write_text
from tatar.config import LoraConfig

RUNS_DIR = Path(".tatar/runs")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# ------------------------------------------------------------------------------------------ hardware
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def use_bf16(setting: str | bool) -> bool:
    """``auto``: bf16 where the GPU supports it; never on CPU, where it is slow and lossy."""
    if setting == "auto":
        import torch

        return cuda_available() and torch.cuda.is_bf16_supported()
    return setting in (True, "true")


def use_gradient_checkpointing(setting: str | bool) -> bool:
    """``auto``: on a GPU (memory is the limit there); off on CPU, where it only costs time."""
    if setting == "auto":
        return cuda_available()
    return setting in (True, "true")


def under_deepspeed() -> bool:
    """This process was started by ``accelerate launch`` with a DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def checkpointing_args(enabled: bool) -> dict:
    """Activation checkpointing, non-reentrant, under the name this transformers reads: 5.24 renamed
    ``gradient_checkpointing`` to ``activation_checkpointing``, and the GPU stack's vLLM pins an older transformers
    (requirements/gpu.txt). Said here because TRL forces reentrant for PEFT under ZeRO-3 through the old name, which
    transformers >= 5.24 no longer reads; DeepSpeed >= 0.19.3 handles frozen parameters without it."""
    from transformers import TrainingArguments

    name = "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient"
    return {f"{name}_checkpointing": enabled, f"{name}_checkpointing_kwargs": {"use_reentrant": False}}


def shared_trainer_args(cfg, work_dir: Path) -> dict:
    """The TRL/transformers arguments SFT and GRPO set alike from their params sections: hardware switches,
    logging, saving, seeds."""
    if cfg.report_to == "tensorboard":  # one event folder per run, beside the resumable work folders
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(work_dir.parent / "tensorboard" / work_dir.name))
    cpu, several = not cuda_available(), int(os.environ.get("WORLD_SIZE", "1")) > 1
    return dict(
        bf16=use_bf16(cfg.bf16),
        **checkpointing_args(use_gradient_checkpointing(cfg.gradient_checkpointing)),
        # use_cpu switches DeepSpeed off, and without a named backend accelerate starts no process group on a CPU.
        use_cpu=cpu and not under_deepspeed(),
        ddp_backend="gloo" if cpu and several else None,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        save_only_model=cfg.save_only_model,
        report_to=cfg.report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=False,
    )


def training_dtype(model_dtype: str, lora_enabled: bool, bf16: bool) -> str:
    """The dtype the weights load in for training. A full fine-tune trains fp32 weights (bf16 compute comes from
    the trainer's autocast) except under DeepSpeed with bf16, which keeps fp32 master copies itself: an AdamW step
    of 1e-6 on bf16 weights without them is below bf16's resolution for nearly every weight. LoRA trains adapters
    PEFT keeps in fp32, so the frozen base stays in ``model.torch_dtype``."""
    if lora_enabled or (under_deepspeed() and bf16):
        return model_dtype
    return "float32"


def fit(trainer, work_dir: Path, stage: str):
    """Train, resuming from the newest complete checkpoint in ``work_dir``; returns (result, resumed_from, seconds).

    Checkpoints a killed save left incomplete are removed first (saying why), so the run falls back to the
    newest complete one, or starts fresh when there is none."""
    if trainer.accelerator.is_main_process:
        for path, problem in incomplete_checkpoints(work_dir):
            print(f"{stage}: discarding {path}: {problem}")
            shutil.rmtree(path, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    resume = last_checkpoint(work_dir)
    if resume and trainer.args.save_only_model and trainer.is_deepspeed_enabled:
        print(f"{stage}: {resume} holds the weights only (save_only_model), which DeepSpeed cannot resume from; "
              "starting fresh")
        resume = None
    if resume:
        print(f"{stage}: resuming from {resume}")
    elif work_dir.is_dir() and any(work_dir.iterdir()):
        print(f"{stage}: no complete checkpoint in {work_dir}; starting fresh")
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    return result, resume, round(time.perf_counter() - start, 1)


def peft_lora_config(cfg: LoraConfig):
    """A ``peft.LoraConfig`` when LoRA is enabled, else None (full fine-tune)."""
    if not cfg.enabled:
        return None
    from peft import LoraConfig as PeftLoraConfig

    # "all-linear" also matches the vision tower's layers; PEFT reads a string here as a regex over module names.
    exclude = None if cfg.vision else r"(.*\.)?(visual|vision_tower)\..*"
    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules, exclude_modules=exclude, task_type="CAUSAL_LM")


# ---------------------------------------------------------------------------------------- work dir
def run_dir(stage: str, key: dict) -> Path:
    """Trainer checkpoints live here, outside DVC's outputs (DVC deletes those before a re-run).

    The folder is named by a hash of everything that defines the run (params, input hashes), so an interrupted
    run resumes while a changed one starts fresh."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return RUNS_DIR / stage / digest


def last_checkpoint(folder: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` (see ``checkpoint_problem``); a save killed midway is skipped."""
    done = [p for p in _checkpoints(folder) if checkpoint_problem(p) is None]
    return str(max(done, key=_step)) if done else None


def incomplete_checkpoints(folder: str | Path) -> list[tuple[Path, str]]:
    return [(p, problem) for p in _checkpoints(folder) if (problem := checkpoint_problem(p)) is not None]


def checkpoint_problem(path: Path) -> str | None:
    """Why a trainer checkpoint cannot be resumed from, or None when it is complete. The Trainer writes
    ``trainer_state.json`` last, so a readable state naming this step means the weights and optimizer are whole."""
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (its save was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "trainer_state.json is torn (the run was killed while writing it)"
    if not isinstance(state, dict) or state.get("global_step") != _step(path):
        return f"trainer_state.json does not record step {_step(path)}"
    if not any(any(path.glob(pattern)) for pattern in _WEIGHTS):
        return "no model weights"
    return None


# Weights of a full model, a LoRA adapter, or a DeepSpeed ZeRO checkpoint (global_stepN/ shards).
_WEIGHTS = ("*.safetensors", "*.bin", "global_step*")


def _checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT_RE.match(p.name)] if folder.is_dir() else []


def _step(path: Path) -> int:
    return int(_CHECKPOINT_RE.match(path.name).group(1))


# ------------------------------------------------------------------------------------------ saving
def save_checkpoint(trainer, processor, out_dir: str | Path, lora: LoraConfig) -> str:
    """Save the trained model as a Hugging Face checkpoint (every process calls it: under DeepSpeed ZeRO-3 the
    trainer gathers the sharded weights) and return its kind ("full", "merged LoRA" or "LoRA adapter"). A LoRA to
    merge is saved as its adapter beside ``out_dir``; ``finish_checkpoint`` merges it outside the launch."""
    out_dir = Path(out_dir)
    trainer.save_model(str(adapter_dir(out_dir) if lora.enabled and lora.merge else out_dir))
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out_dir)
    if not lora.enabled:
        return "full"
    return "merged LoRA" if lora.merge else "LoRA adapter"


def adapter_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".adapter")


def finish_checkpoint(out_dir: str | Path, lora: LoraConfig, base_location: str) -> None:
    """In the stage's own process, after training: merge a saved LoRA adapter into its base (one process, no ZeRO
    partitioning in the way)."""
    if lora.enabled and lora.merge:
        merge_adapter(base_location, adapter_dir(Path(out_dir)), Path(out_dir))


def merge_adapter(base_location: str, adapter_dir: Path, out_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(base_location, dtype="auto")
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    shutil.rmtree(adapter_dir, ignore_errors=True)


def how_to_load(out_dir: str | Path, kind: str) -> str:
    """The model card's "How to load" section, the same for SFT and GRPO checkpoints."""
    text = (f"```python\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\n"
            f"model = AutoModelForImageTextToText.from_pretrained('{out_dir}')\n"
            f"processor = AutoProcessor.from_pretrained('{out_dir}')\n```\n"
            "Prompts: `tatar.prompts.prompt_messages(task)`; greedy; parse with `tatar.parsing.parse_answer`.")
    if kind == "LoRA adapter":
        text += "\nThis folder holds a LoRA adapter (with `peft` installed transformers loads it onto its base model)."
    return text


def write_model_card(out_dir: str | Path, title: str, facts: dict[str, object], sections: dict[str, str]) -> None:
    """A short README.md: a facts table, then free-text sections (how to load, checks)."""
    lines = [f"# {title}", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in facts.items()], ""]
    for heading, body in sections.items():
        lines += [f"## {heading}", "", body.strip(), ""]
    write_text(Path(out_dir) / "README.md", "\n".join(lines))
