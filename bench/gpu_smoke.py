"""GPU smoke test at real size: the pipeline's own SFT, GRPO and evaluation code on a Qwen2.5-VL-7B-sized model.

No hub is reachable on the GPU machines, so the 7B model is built from its published config with random weights
(bf16) and the project's locally trained tokenizer. It proves the real-size code path (full fine-tune, bf16,
gradient checkpointing, G completions per image, batched greedy evaluation) and measures step times, peak GPU
memory and evaluation throughput; it says nothing about quality. Run from the project root on a GPU machine:

    python bench/gpu_smoke.py --out gpu_smoke.json [--sft-steps 4 --grpo-steps 2] [--launch zero3 --processes 8]

SFT and GRPO start ``accelerate launch`` themselves, as ``tatar run`` does (``launch`` in params).

Order: build the base, time evaluation on it (random weights never stop early, so every answer runs to
``--eval-max-new-tokens``: a worst-case throughput), then SFT and GRPO (``--final-eval``: evaluate the GRPO
checkpoint too).

Figures recorded in bench/GPU_RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Qwen2.5-VL-7B-Instruct's published architecture.
QWEN25_VL_7B_TEXT = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768)
QWEN25_VL_7B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           window_size=112, fullatt_block_indexes=[7, 15, 23, 31], spatial_merge_size=2,
                           patch_size=14, temporal_patch_size=2, hidden_act="silu")

RESULTS: dict = {}


def record(out: Path, key: str, value) -> None:
    RESULTS[key] = value
    out.write_text(json.dumps(RESULTS, indent=2, default=str))
    print(f"[smoke] {key}: {value}", flush=True)


def reset_gpu_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_gib() -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return round(torch.cuda.max_memory_allocated() / 2**30, 1)


# --dry-run: the same script with a small model on the CPU, to check it before spending GPU time.
DRY_TEXT = dict(vocab_size=3072, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096)
DRY_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                  fullatt_block_indexes=[1])


def build_real_size_base(params, base_dir: Path, dry_run: bool = False) -> int:
    """Random-weight Qwen2.5-VL-7B (bf16, on the GPU) + the project's tokenizer/processor, saved to ``base_dir``."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from tatar.modeling import build_tiny_model

    tiny = build_tiny_model(params.model.tiny, base_dir.with_name("tiny"), params.model.min_pixels,
                            params.model.max_pixels)
    processor = AutoProcessor.from_pretrained(tiny)
    tiny_cfg = json.loads((tiny / "config.json").read_text())
    special = {k: tiny_cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                        "vision_end_token_id")}
    text = dict(DRY_TEXT if dry_run else QWEN25_VL_7B_TEXT, eos_token_id=tiny_cfg["text_config"]["eos_token_id"],
                pad_token_id=tiny_cfg["text_config"]["pad_token_id"], bos_token_id=None,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                 "mrope_section": [4, 6, 6] if dry_run else [16, 24, 24]})
    config = Qwen2_5_VLConfig(text_config=text, vision_config=DRY_VISION if dry_run else QWEN25_VL_7B_VISION,
                              tie_word_embeddings=False, **special)
    torch.manual_seed(0)
    with torch.device("cpu" if dry_run else "cuda"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny).generation_config
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    del model
    if not dry_run:
        torch.cuda.empty_cache()
    return n_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_smoke.json"))
    ap.add_argument("--sft-steps", type=int, default=4)
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--eval-batch", type=int, default=32, help="eval.batch_size (the CPU default is 32 too)")
    ap.add_argument("--eval-max-new-tokens", type=int, default=256, help="the paper's generation budget")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="put .tatar/runs (trainer checkpoints with optimizer state, ~50 GB at 7B) there, "
                         "e.g. /dev/shm/runs when the disk is short")
    ap.add_argument("--base-dir", type=Path, default=Path(".tatar/gpu/base7b"),
                    help="where the random 7B base is saved (16 GB; e.g. /dev/shm when disk is short)")
    ap.add_argument("--eval-benchmarks", nargs="*", default=None, help="subset of eval.benchmarks to time")
    ap.add_argument("--no-base-eval", action="store_true", help="skip timing evaluation on the random base")
    ap.add_argument("--final-eval", action="store_true", help="also evaluate the GRPO checkpoint (same speed)")
    ap.add_argument("--skip-data", action="store_true", help="reuse data/manifests and data/corpus if present")
    ap.add_argument("--dry-run", action="store_true", help="small model on the CPU: check the script itself")
    ap.add_argument("--launch", default="bench/zero3_offload.yaml",
                    help="launch.config for sft and grpo: a full 7B fine-tune trains fp32 master weights, which on "
                         "one GPU fit only with DeepSpeed's optimizer offload (this file); single_gpu, ddp, zero2, "
                         "zero3 as in params")
    ap.add_argument("--processes", type=int, default=None, help="launch.num_processes (default: every GPU)")
    args = ap.parse_args()
    out = args.out

    import torch

    from tatar.cli import STAGES, _call
    from tatar.config import load_params

    record(out, "device", "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(0))
    bf16 = "false" if args.dry_run else "true"
    params = load_params()
    base_dir = args.base_dir

    # Data stages as the embedded default runs them (CPU); --skip-data reuses a corpus built elsewhere.
    if not (args.skip_data and Path("data/corpus/corpus.jsonl").exists()):
        t = time.perf_counter()
        for stage in ("prepare", "rationales", "base_model", "validate"):  # validate counts tokens with the base
            _call(STAGES[stage])(params)
        record(out, "data_stages_s", round(time.perf_counter() - t, 1))

    t = time.perf_counter()
    record(out, "base_params_billion", round(build_real_size_base(params, base_dir, args.dry_run) / 1e9, 2))
    record(out, "base_build_and_save_s", round(time.perf_counter() - t, 1))

    e = params.eval
    e.batch_size, e.max_new_tokens = args.eval_batch, 16 if args.dry_run else args.eval_max_new_tokens
    if args.eval_benchmarks:
        e.benchmarks = args.eval_benchmarks
    if not args.no_base_eval:
        timed_eval(out, params, "eval_base", checkpoint=base_dir)

    if args.runs_dir:
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        runs = Path(".tatar/runs")
        if runs.is_symlink():
            runs.unlink()
        shutil.rmtree(runs, ignore_errors=True)
        runs.parent.mkdir(parents=True, exist_ok=True)
        runs.symlink_to(args.runs_dir.resolve())
    params.model.base = str(base_dir)
    params.launch.config = args.launch
    params.launch.num_processes = args.processes or max(1, torch.cuda.device_count())
    record(out, "launch", params.launch.model_dump())
    params.model.max_pixels = 12544 if args.dry_run else 448 * 448
    _call(STAGES["base_model"])(params)

    s = params.sft
    s.max_steps, s.per_device_batch_size, s.bf16, s.gradient_checkpointing = args.sft_steps, 4, bf16, bf16
    s.logging_steps, s.check_samples, s.check_max_new_tokens = 1, 4, 64
    s.heldout.eval_steps = 0  # the evaluate stage below times generation; keep device minutes for it
    reset_gpu_peak()
    t = time.perf_counter()
    _call(STAGES["sft"])(params)
    record(out, "sft_stage_s", round(time.perf_counter() - t, 1))
    record(out, "sft_peak_gib", gpu_peak_gib())
    record(out, "sft_training", json.loads(Path("data/models/sft/sft_check.json").read_text()).get("training"))
    shutil.rmtree(base_dir, ignore_errors=True)  # disk: three 16 GB checkpoints do not fit beside each other
    shutil.rmtree(".tatar/runs/sft", ignore_errors=True)  # SFT's resumable checkpoint (~50 GB): not needed now

    g = params.grpo
    g.max_steps, g.num_generations, g.max_completion_length = args.grpo_steps, 8, 128
    g.per_device_batch_size, g.prompts_per_generation, g.bf16, g.gradient_checkpointing = 32, 4, bf16, bf16
    g.heldout.eval_steps = 0
    reset_gpu_peak()
    t = time.perf_counter()
    _call(STAGES["grpo"])(params)
    record(out, "grpo_stage_s", round(time.perf_counter() - t, 1))
    record(out, "grpo_peak_gib", gpu_peak_gib())
    log = json.loads(Path("data/models/grpo/grpo_log.json").read_text()) if Path(
        "data/models/grpo/grpo_log.json").exists() else {}
    record(out, "grpo_training", {k: v for k, v in log.items() if k != "log"})
    shutil.rmtree("data/models/sft", ignore_errors=True)
    shutil.rmtree(".tatar/runs/grpo", ignore_errors=True)

    if args.final_eval:
        timed_eval(out, params, "eval_grpo", checkpoint=Path("data/models/grpo"))


def timed_eval(out: Path, params, key: str, checkpoint: Path) -> None:
    """The evaluate stage on ``checkpoint``: wall time, peak GPU memory, images/s and parse rate per benchmark."""
    from tatar.cli import STAGES, _call

    reset_gpu_peak()
    params.eval.checkpoint = str(checkpoint)
    t = time.perf_counter()
    _call(STAGES["evaluate"])(params)
    record(out, f"{key}_stage_s", round(time.perf_counter() - t, 1))
    record(out, f"{key}_peak_gib", gpu_peak_gib())
    metrics = json.loads(Path("data/eval/metrics.json").read_text())
    record(out, f"{key}_benchmarks", {k: {f: v.get(f) for f in ("n", "seconds", "images_per_s", "parse_failure_rate")}
                                      for k, v in metrics.get("benchmarks", {}).items()})


if __name__ == "__main__":
    main()
