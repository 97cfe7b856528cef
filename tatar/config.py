"""Typed configuration loaded from ``params.yaml``: one section per DVC stage.

Every section is a pydantic model that forbids unknown keys, so a typo such as ``grpo.betta`` or a string
where a number belongs is a clear error naming the key, not a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tatar.errors import UsageError
from tatar.readout import Readout

PARAMS_FILE = "params.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- data
class SyntheticConfig(Section):
    """The embedded default: built offline from photographs that ship with scikit-image (see tatar.data.synthetic)."""

    enabled: bool = True
    image_size: int = Field(default=112, ge=16)
    # Photographs used (tatar.data.sources.PHOTOS); split by name so train and test never share a scene.
    # hubble_deep_field and grace_hopper are available but not defaults (NOTES.md, issue 16).
    sources: list[str] = Field(default_factory=lambda: [
        "astronaut", "immunohistochemistry", "retina", "motorcycle_left", "motorcycle_right", "chelsea", "rocket",
        "coffee"])
    test_sources: list[str] = Field(default_factory=lambda: ["chelsea", "rocket", "coffee"])
    # Distortion names from tatar.data.synthetic_iqa.DISTORTIONS, each rendered at levels 1..iqa_levels.
    iqa_distortions: list[str] = Field(
        default_factory=lambda: ["gaussian_blur", "brighten", "darken", "contrast_decrease"]
    )
    iqa_levels: int = Field(default=5, ge=1)
    # (distortion, level) pairs drawn per reference image (seeded); 0 renders the full grid.
    iqa_per_source: int = Field(default=16, ge=0)
    iaa_variants_per_source: int = Field(default=4, ge=1)
    # Scenes per photograph: crop 0 is the whole frame, others seeded sub-windows.
    crops_per_source: int = Field(default=8, ge=1)
    # Scenes per training photograph for IQA alone (0: crops_per_source); IAA and the test side keep
    # crops_per_source. IQA images are cheap to render, teach and score; the first crops are the same either way.
    iqa_train_crops: int = Field(default=0, ge=0)
    # Procedural dead-leaves scenes added to the training photographs (tatar.data.dead_leaves), cropped alike.
    dead_leaves: int = Field(default=0, ge=0)


class TrainSetConfig(Section):
    """One training source imported from disk in a named format (tatar.data.formats.FORMATS; README "Datasets")."""

    name: str
    format: Literal["koniq", "spaq", "kadid", "pipal", "ava", "tad66k", "flickr-aes", "artimuse", "generic"]
    path: str
    images: str
    # ArtiMuse-10K: the per-aspect conversation JSONL joined (by image file name) with the score JSON in ``path``.
    text: str | None = None
    task: Literal["iqa", "iaa"] | None = None
    image_column: str = "image"
    score_column: str = "score"
    scale: tuple[float, float] | None = None
    # Per-row scale instead of ``scale``: names of the columns holding lo and hi (generic format).
    scale_columns: tuple[str, str] | None = None
    lower_is_better: bool = False
    # The file's own split column (KonIQ: ``set``) and the values kept; None keeps the format's default
    # (KonIQ: training + validation) or every row when the file has no such column.
    split_column: str | None = None
    splits: list[str] | None = None
    # Image paths that leave ``images`` (``../x.png``, absolute paths) are quarantined unless this is set.
    allow_outside_root: bool = False
    # The benchmark whose test labels share this set's label transform (default: the format's own benchmark).
    benchmark: str | None = None

    @field_validator("scale")
    @classmethod
    def _scale_increases(cls, scale: tuple[float, float] | None) -> tuple[float, float] | None:
        if scale is not None and not scale[1] > scale[0]:
            raise ValueError("scale [lo, hi] needs hi > lo (use lower_is_better: true for DMOS-like labels)")
        return scale


class QuarantineConfig(Section):
    """When prepare fails instead of quarantining and carrying on."""

    max_fraction: float = 0.01
    # A training image whose bytes are in a listed test set (quarantined as train_test_overlap in every case):
    # fail prepare; exclude it (counted per dataset in report.md, not against max_fraction); or quarantine it like
    # any bad record (counted against max_fraction).
    overlap: Literal["fail", "exclude", "quarantine"] = "fail"

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data):
        if isinstance(data, dict) and "fail_on_overlap" in data:
            raise ValueError("fail_on_overlap was replaced by overlap: fail | exclude | quarantine "
                             "(fail_on_overlap: false is overlap: quarantine)")
        return data

    @property
    def excludes_overlap(self) -> bool:
        return self.overlap == "exclude"


class ValidationSplitConfig(Section):
    """Held-out images drawn from the training records by prepare (data/manifests/val.jsonl, tatar.data.split)
    and scored during SFT and GRPO every ``heldout.eval_steps``; fraction 0 keeps every record for training."""

    fraction: float = Field(default=0.0, ge=0, lt=1)  # share of the training images held out (by a keyed hash)
    max_per_task: int = Field(default=0, ge=0)  # cap per task (0: none); scoring costs time every eval_steps


class DataConfig(Section):
    seed: int = 0
    synthetic: SyntheticConfig = SyntheticConfig()
    train: list[TrainSetConfig] = Field(default_factory=list)
    # Benchmarks (registry names) whose imported manifests are part of the test set (``tatar data import``).
    benchmarks: list[str] = Field(default_factory=list)
    quarantine: QuarantineConfig = QuarantineConfig()
    validation: ValidationSplitConfig = ValidationSplitConfig()


# ------------------------------------------------------------------------------------------ teacher
class SamplingConfig(Section):
    temperature: float
    top_p: float
    max_tokens: int


def _no_credentials(url: str | None) -> str | None:
    """Params end up in dvc.lock, git and lineage: a URL carrying a key or password is refused."""
    from tatar.redact import url_credentials

    if url and (found := url_credentials(url)):
        raise ValueError(f"base_url carries credentials ({found}); put the key in the environment variable named "
                         f"by api_key_env instead")
    return url


class TaskTeacherConfig(SamplingConfig):
    """One task's teacher: its sampling, and optionally its own endpoint and model (unset: the shared ones)."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None

    _check_url = field_validator("base_url")(_no_credentials)


class TeacherConfig(Section):
    # "local" starts the reference teacher (tatar.standins.server) on a free loopback port for the run.
    base_url: str = "local"
    model: str = "tatar-reference-teacher"
    # Name of the environment variable that holds the API key; the key itself never enters params or logs.
    api_key_env: str = "TATAR_TEACHER_API_KEY"
    _check_url = field_validator("base_url")(_no_credentials)
    prompt_version: str = "v1"
    concurrency: int = 64
    timeout_s: float = 60.0
    max_retries: int = 5
    max_reasks: int = 2
    cache_dir: str = ".tatar/cache/teacher"
    # Per task: sampling, and optionally base_url / model / api_key_env of that task's own teacher (the paper asks
    # a VLM for IQA and a text-only reasoning model for IAA); unset fields fall back to the shared ones above.
    iqa: TaskTeacherConfig = TaskTeacherConfig(temperature=0.3, top_p=0.8, max_tokens=140)
    iaa: TaskTeacherConfig = TaskTeacherConfig(temperature=0.2, top_p=0.9, max_tokens=500)
    # Share of each task's manifest records that must end with a rationale; below it the stage writes its outputs,
    # then fails naming the top failure reasons (a broken teacher must not shrink the corpus silently).
    min_success_rate: float = Field(0.9, ge=0, le=1)
    # Rationale length in words [min, max] after normalisation; outside it the teacher is re-asked.
    # IQA is cut to its first two sentences and at most max words (the paper's normaliser) before the check.
    words_iqa: tuple[int, int] = (20, 50)
    words_iaa: tuple[int, int] = (80, 450)

    def for_task(self, task: str) -> TaskTeacherConfig:
        """The task's teacher with the shared endpoint and model filled in where it sets none."""
        own = self.iqa if task == "iqa" else self.iaa
        return own.model_copy(update={name: getattr(own, name) or getattr(self, name)
                                      for name in ("base_url", "model", "api_key_env")})


# ----------------------------------------------------------------------------------------- validate
class JudgeConfig(Section):
    enabled: bool = False
    base_url: str = "local"
    model: str = "tatar-reference-teacher"
    api_key_env: str = "TATAR_JUDGE_API_KEY"
    _check_url = field_validator("base_url")(_no_credentials)
    concurrency: int = 32
    timeout_s: float = 60.0
    max_retries: int = 5
    max_reasks: int = 2
    cache_dir: str = ".tatar/cache/judge"
    prompt_version: str = "v1"  # judge prompt files tatar/validation/prompts/judge_<task>_<version>.txt
    temperature: float = 0.0  # paper: the judge decodes greedily
    max_tokens: int = 400
    # Each listed verdict score must be strictly greater than its value (0-5 scales) for the record to be kept.
    # Paper: IQA keeps when decision=keep and visual_fidelity > 2 and score_consistency > 2.
    iqa_min: dict[str, float] = Field(default_factory=lambda: {"visual_fidelity": 2, "score_consistency": 2})
    # Paper: IAA keeps when decision=keep and groundedness > 2 and cohesion > 2.
    iaa_min: dict[str, float] = Field(default_factory=lambda: {"groundedness": 2, "cohesion": 2})


class ValidateConfig(Section):
    # Think words [min, max] of a kept target; the top must fit grpo.max_completion_length and eval.max_new_tokens
    # (checked on load; validate then counts each target in the base model's tokens, see tatar.validation.budget).
    think_words_iqa: tuple[int, int] = (15, 50)
    think_words_iaa: tuple[int, int] = (80, 250)
    min_attributes: int = 5
    # A number in <think> within this distance of the 0-100 ground truth (after rescaling "7.2/10", "72%",
    # "0.72", "3.9/5" ...) counts as stating the score.
    score_leak_tolerance: float = 0.5
    min_keep_rate_iqa: float = 0.8
    min_keep_rate_iaa: float = 0.8
    judge: JudgeConfig = JudgeConfig()


# -------------------------------------------------------------------------------------------- model
class TinyModelConfig(Section):
    """Sizes of the tiny Qwen2.5-VL built from a config for the embedded default."""

    seed: int = 0
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 128
    vision_num_heads: int = 2
    # Pixels per patch side (Qwen2.5-VL: 14); 2x2 patches make one visual token, so a smaller patch gives an image
    # of the same size 4x the visual tokens.
    vision_patch_size: int = Field(14, ge=2)
    # How a score "NN.NN" is tokenised: "tens" (tens digit, then units+fraction as one token), "tenths" (tens digit,
    # units+tenths, hundredths digit), "digits" (digit by digit, the fraction one token) or "integer" (the integer
    # part one token); see tatar.modeling.SPELLINGS.
    score_tokens: Literal["tens", "tenths", "digits", "integer"] = "tens"


class ModelConfig(Section):
    # "tiny" builds a small Qwen2.5-VL (stage base_model); otherwise a local path or hub id of any
    # AutoModelForImageTextToText VLM, e.g. Qwen/Qwen2.5-VL-7B-Instruct.
    base: str = "tiny"
    tiny: TinyModelConfig = TinyModelConfig()
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 28 * 28 * 16
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str | None = None


# ---------------------------------------------------------------------------------------- training
class LaunchConfig(Section):
    """How sft and grpo run (tatar.training.launch): in the stage's own process, or under ``accelerate launch``
    with a shipped accelerate config (tatar/accelerate/<name>.yaml) or a path to one's own."""

    config: str = "single_gpu"  # single_gpu | ddp | zero2 | zero3 | path/to/accelerate.yaml
    num_processes: int = Field(1, ge=1)  # all machines together, as accelerate counts them
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)  # this node's rank; TATAR_MACHINE_RANK overrides it per node
    main_process_ip: str | None = None  # rank 0's address (several machines)
    main_process_port: int | None = Field(None, ge=1, le=65535)

    @property
    def in_process(self) -> bool:
        """One process and no engine: the stage trains itself, with no launcher in between."""
        return self.config == "single_gpu" and self.num_processes == 1 and self.num_machines == 1


class LoraConfig(Section):
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    # Adapt the vision tower too (with "all-linear" PEFT matches its linear layers); off leaves it as it is, which is
    # what freeze_vision asks for.
    vision: bool = False
    merge: bool = True  # save a merged full checkpoint (True) or the adapter only (False)


class HeldOutConfig(Section):
    """Scoring the held-out validation split (data/manifests/val.jsonl) during training: SRCC, PLCC, parse rate
    and think words per task, logged to the training curves (tatar.training.curves)."""

    eval_steps: int = Field(default=0, ge=0)  # 0: never; otherwise every N optimiser steps and after the last
    batch_size: int = Field(default=16, ge=1)  # images per generate call, both tasks together
    max_new_tokens: int = Field(default=256, ge=1)
    save_best: bool = False  # keep the weights of the step with the best mean validation SRCC, not the last


class VisionWarmupConfig(Section):
    """Before SFT, fit a randomly initialised vision tower to the training IQA images' MOS (tatar.training.vision)."""

    steps: int = Field(0, ge=0)  # 0: no warm-up (a pretrained tower needs none)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)


class ThinkDropoutConfig(Section):
    """Asymmetric thought dropout: probability that a target drops its <think> block (answer only)."""

    iqa: float = Field(0.9, ge=0, le=1)
    iaa: float = Field(0.0, ge=0, le=1)


class SFTConfig(Section):
    seed: int = 0
    epochs: float = 2.0
    max_steps: int = -1
    learning_rate: float = 1e-5
    weight_decay: float = Field(0.0, ge=0)  # AdamW's decoupled decay (transformers' default 0)
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    warmup: float = 0.03
    # Probability that the next example (micro-batch with batch_by_task) is IQA: the tasks are interleaved, not blocked.
    p_iqa: float = Field(0.5, ge=0, le=1)
    # One task per micro-batch: no IQA answer padded to an IAA narrative. Tokens weigh alike across the micro-batches
    # of an optimiser step; with no gradient accumulation each task is weighed per batch (see params.yaml, NOTES.md).
    batch_by_task: bool = False
    # Loss path: TRL's tiled LM head (flat GPU memory) or plain (the LM head on labelled positions only);
    # auto = tiled on a GPU, plain on a CPU.
    lm_head: Literal["auto", "tiled", "plain"] = "auto"
    # > 0: an answer's tens digit learns the mass N(MOS, score_sigma^2) puts on each decade instead of a one-hot
    # target (DeQA-Score's soft labels; tatar.training.soft_scores). In MOS points on 0-100; 0 = one-hot.
    score_sigma: float = Field(0.0, ge=0)
    vision_warmup: VisionWarmupConfig = VisionWarmupConfig()
    # Keep the vision tower's weights fixed through SFT (the warmed-up or pretrained tower is what the LLM reads).
    freeze_vision: bool = False
    think_dropout: ThinkDropoutConfig = ThinkDropoutConfig()
    max_length: int | None = 2048
    lora: LoraConfig = LoraConfig()
    bf16: Literal["auto", "true", "false"] = "auto"  # auto: where the GPU supports it
    gradient_checkpointing: Literal["auto", "true", "false"] = "auto"  # auto: on a GPU, off on CPU
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    # Trainer checkpoints hold the weights only, no optimizer or scheduler state (a 7B full fine-tune's ZeRO-3
    # checkpoint is ~100 GB with them); a run then resumes with a fresh optimizer.
    save_only_model: bool = False
    heldout: HeldOutConfig = HeldOutConfig()
    # Greedy generations on the synthetic test images after training, to print parse rate and think length.
    check_samples: int = 16
    check_max_new_tokens: int = 512


class GaussianRewardConfig(Section):
    threshold: float = 8.75
    alpha_iqa: float = 0.8
    alpha_iaa: float = 2.0
    max_words_iqa: int | None = 65
    max_words_iaa: int | None = None


class ThurstoneRewardConfig(Section):
    tau: float = 0.08
    margin: float = 0.12
    eps: float = 1e-6
    link: Literal["normal", "logistic"] = "normal"


class GRPOConfig(Section):
    seed: int = 0
    freeze_vision: bool = False  # keep the vision tower fixed (as sft.freeze_vision): the policy learns to read it
    num_generations: int = 8
    beta: float = 0.001
    learning_rate: float = 1e-6
    epochs: float = 3.0
    max_steps: int = -1
    max_completion_length: int = 256
    per_device_batch_size: int = 8  # completions (not prompts) per device per optimisation step
    gradient_accumulation_steps: int = 1
    # Images per generation batch, all processes together (TRL's generation_batch_size / num_generations). The
    # ranking compares IAA images within one generation batch, so it must hold >= 2 IAA images; the train order
    # interleaves the tasks in blocks of this size.
    prompts_per_generation: int = 8
    # Sampling temperature of the G completions (TRL default 1.0; the paper's trainer samples at 1.0 too).
    temperature: float = Field(1.0, gt=0)
    # TRL loss aggregation: "grpo" averages each completion's tokens, then the completions (the paper's code);
    # "dapo" (TRL's default) averages over all tokens of the accumulated batch, without GRPO's length bias.
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo"] = "dapo"
    # Advantage scaling: "group" divides by the std of the image's G rewards (GRPO, TRL default, the paper's code),
    # "batch" by the batch's std, "none" not at all (Dr. GRPO).
    scale_rewards: Literal["group", "batch", "none"] = "group"
    # IAA length floor (the paper's code: 125): an IAA completion of fewer words earns 0 from every IAA reward but
    # format, so GRPO cannot shorten the slow narrative. None = off.
    min_words_iaa: int | None = Field(None, ge=1)
    # Reward weights per task: name in tatar.rewards.REWARDS -> weight. A reward absent for a task gives None there.
    rewards_iqa: dict[str, float] = Field(default_factory=lambda: {"format": 1.0, "gaussian_score": 1.0})
    rewards_iaa: dict[str, float] = Field(default_factory=lambda: {"format": 1.0, "thurstone_rank": 1.0})
    gaussian: GaussianRewardConfig = GaussianRewardConfig()
    thurstone: ThurstoneRewardConfig = ThurstoneRewardConfig()
    lora: LoraConfig = LoraConfig()
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"  # server: start `trl vllm-serve --model ...` first
    # colocate: the share of each GPU's memory vLLM takes, its tensor-parallel group (divides launch.num_processes)
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    # Context vLLM sizes its cache for (prompt with image tokens + completion); None: the model's full context.
    vllm_max_model_length: int | None = Field(None, ge=1)
    vllm_server_host: str = "0.0.0.0"  # server: where `trl vllm-serve` listens
    vllm_server_port: int = Field(8000, ge=1, le=65535)
    bf16: Literal["auto", "true", "false"] = "auto"  # auto: where the GPU supports it
    gradient_checkpointing: Literal["auto", "true", "false"] = "auto"  # auto: on a GPU, off on CPU
    logging_steps: int = 1
    save_steps: int = 200
    save_total_limit: int = 2
    log_completions: bool = False  # print a table of sampled completions and their rewards at each log
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    save_only_model: bool = False  # as sft.save_only_model
    heldout: HeldOutConfig = HeldOutConfig()


class OverfitConfig(Section):
    """``tatar overfit``: memorise a few corpus records with the SFT code path, then score the same images."""

    seed: int = 0
    records: int = Field(32, ge=2)  # per task
    tasks: list[Literal["iqa", "iaa"]] = Field(default_factory=lambda: ["iqa", "iaa"])
    epochs: float = Field(30.0, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    min_srcc: float = 0.9  # a task below it on its own training images fails the check (exit 1)
    max_new_tokens: int = Field(512, ge=1)
    # Steps of sft.vision_warmup before the overfit (None: sft's own); a few images need far fewer.
    vision_warmup_steps: int | None = Field(None, ge=0)


# --------------------------------------------------------------------------------------------- eval
class EvalConfig(Section):
    # Checkpoint to score (TATAR_EVAL_CHECKPOINT overrides it for a one-off run).
    checkpoint: str = "data/models/grpo"
    # Test manifests to score: "synthetic_iqa", "synthetic_iaa" or any imported benchmark name.
    benchmarks: list[str] = Field(default_factory=lambda: ["synthetic_iqa", "synthetic_iaa"])
    # A benchmark whose manifest or images are missing fails the stage, or with this is skipped and recorded.
    skip_missing: bool = False
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    # Generate with vLLM (optional extra `tatar[vllm]`, GPUs); batch_size is then images per vLLM call.
    use_vllm: bool = False
    # How a score is read from the greedy answer (tatar.readout): the number written, or its tens digit's
    # expectation under the model's probabilities (Q-Align style).
    readout: Readout = "greedy"


class Params(Section):
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    model: ModelConfig = ModelConfig()
    launch: LaunchConfig = LaunchConfig()
    sft: SFTConfig = SFTConfig()
    grpo: GRPOConfig = GRPOConfig()
    eval: EvalConfig = EvalConfig()
    overfit: OverfitConfig = OverfitConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def validate(self) -> ValidateConfig:  # noqa: D401 - "validate" clashes with BaseModel.validate
        return self.validate_


def budget_problems(params: Params) -> list[str]:
    """Word ranges that cannot fit the generation budgets. A target longer than the budget never reaches
    ``</answer>`` in GRPO or evaluation. Every word is at least one token (byte-level BPE never merges across a
    space) and the answer one more, so a range whose top exceeds a budget cannot fit with any tokenizer; ``validate``
    then counts each target in the base model's own tokens (``tatar.validation.budget``)."""
    budgets = {"grpo.max_completion_length": params.grpo.max_completion_length,
               "eval.max_new_tokens": params.eval.max_new_tokens}
    words = {f"validate.think_words_{task}": ("allows", getattr(params.validate, f"think_words_{task}")[1])
             for task in ("iqa", "iaa")}
    if params.grpo.min_words_iaa is not None:
        words["grpo.min_words_iaa"] = ("requires", params.grpo.min_words_iaa)
    return [f"{wkey} {verb} {n} words, at least {n + 1} tokens with the answer, over {bkey} = {budget}"
            for wkey, (verb, n) in words.items() for bkey, budget in budgets.items() if n + 1 > budget]


def batch_problems(params: Params) -> list[str]:
    """Batch settings TRL or the ranking would reject after the model has loaded, named by their keys."""
    g, world = params.grpo, params.launch.num_processes
    generation, step = g.prompts_per_generation * g.num_generations, g.per_device_batch_size * world
    problems = []
    if g.num_generations < 2:
        problems.append(f"grpo.num_generations = {g.num_generations}: GRPO needs >= 2 completions per image")
    if generation % step:
        problems.append(f"grpo.prompts_per_generation x grpo.num_generations = {g.prompts_per_generation} x "
                        f"{g.num_generations} = {generation} completions per generation batch must be a multiple of "
                        f"grpo.per_device_batch_size x launch.num_processes = {g.per_device_batch_size} x {world} = "
                        f"{step}")
    ranked = "thurstone_rank" in g.rewards_iaa
    need = (2 if ranked else 1) + (1 if g.rewards_iqa else 0) if g.rewards_iaa else 1
    if g.prompts_per_generation < need:
        problems.append(f"grpo.prompts_per_generation = {g.prompts_per_generation}: a generation batch must hold "
                        f"{'>= 2 IAA images for the ranking' if ranked else '>= 1 IAA image'}"
                        f"{' and >= 1 IQA image' if g.rewards_iqa and g.rewards_iaa else ''} ({need} images)")
    if g.vllm_mode == "server" and not g.use_vllm:
        problems.append("grpo.vllm_mode = server needs grpo.use_vllm = true")
    if g.use_vllm and g.vllm_mode == "colocate" and world % g.vllm_tensor_parallel_size:
        problems.append(f"grpo.vllm_tensor_parallel_size = {g.vllm_tensor_parallel_size} must divide "
                        f"launch.num_processes = {world}")
    launch = params.launch
    if launch.num_processes < launch.num_machines:
        problems.append(f"launch.num_processes = {launch.num_processes} counts all machines' processes: "
                        f"at least launch.num_machines = {launch.num_machines}")
    if launch.num_machines > 1 and not launch.main_process_ip:
        problems.append(f"launch.num_machines = {launch.num_machines} needs launch.main_process_ip (rank 0's address)")
    return problems


class ConfigError(UsageError, ValueError):
    """params.yaml is malformed; the message names each offending key."""


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project root or pass --params)")
    from tatar.params_file import read_params_yaml

    return parse_params(read_params_yaml(path, ConfigError), source=str(path))


def parse_params(raw: dict, source: str = PARAMS_FILE) -> Params:
    """Typed params from a params file's dict; also checks across sections what one section cannot (budgets)."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]).replace("validate_", "validate")
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: invalid parameters\n" + "\n".join(lines)) from None
    if problems := budget_problems(params):
        raise ConfigError(f"{source}: targets cannot fit the generation budget (lower the word range or raise the "
                          "budget)\n" + "\n".join(f"  {p}" for p in problems))
    if problems := batch_problems(params):
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return params
