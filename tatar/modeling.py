"""The base model: a tiny Qwen2.5-VL built from a config (embedded default), or any local / hub VLM.

``build_tiny_model`` gives the CPU default a model with exactly the real thing's interfaces: a
``Qwen2_5_VLForConditionalGeneration``, a byte-level BPE tokenizer with Qwen's special tokens, Qwen2.5-VL's own
chat template (so TRL swaps in its training template with ``{% generation %}`` markers, as for the 7B model) and
the Qwen2-VL image processor with a small pixel budget. ``load_model_and_processor`` loads either kind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tatar.config import ModelConfig, Params, TinyModelConfig
from tatar.errors import TatarError
from tatar.prompts import QUESTIONS, SYSTEM_PROMPT
from tatar.records import ATTRIBUTES, write_json

# transformers 5 loads every model with use_kernels=True once the `kernels` package is installed (a transformers
# dependency), and on a GPU model.train() / .eval() then fetch kernels from the Hub: a download at run time, and
# an error offline (seen on an H200, bench/GPU_RESULTS.md). Off unless the user sets USE_HUB_KERNELS=YES; this
# also reaches the models TRL loads itself (GRPO's reference model).
os.environ.setdefault("USE_HUB_KERNELS", "NO")

BASE_DIR = Path("data/models/base")
# Written by stage base_model when model.base names an existing model instead of "tiny".
REFERENCE_FILE = "base.json"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# Ordinary tokens on purpose: TRL decodes completions with special tokens skipped, and special tags would vanish
# from every completion (every format reward 0). Single tokens still make the contract cheap to learn.
CONTRACT_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
# How the tiny tokenizer spells a score "NN.NN" (model.tiny.score_tokens). Qwen2's pre-tokenizer splits digits
# one by one; added tokens match before pre-tokenization (longest first), so the spelling below is exact.
# - "tens": the tens digit alone, then one added token for units and fraction ("0.00".."9.99"): "72.35" -> 7 2.35,
#   "8.74" -> 8.74. The first token after <answer> is a 10-way ordinal choice that a few hundred images populate
#   densely (the ranking), and a bare digit never follows a bare digit, so greedy decoding cannot repeat digits.
# - "digits": digits, then the fraction (".00"..".99"): 7 2 .35. The first token is the same tens digit, but the
#   tiny model learned "a digit follows a digit" and greedy answers ran on ("<answer>443333333.52").
# - "integer": one token for the integer part ("10".."100") + the fraction: 72 .35. A 91-way first choice with one
#   or two training images per class: the tiny model learned the marginal and answered one number for every image.
# - "tenths": the tens digit, one added token for units and tenths ("0.0".."9.9"), the hundredths digit: 7 2.3 5.
#   The second choice is 100-way instead of "tens"' 1000-way, whose greedy pick came out constant per tens digit
#   (6-8 distinct answers over 192 test images); still no bare digit after a bare digit.
FRACTION_TOKENS = [f".{i:02d}" for i in range(100)]
SPELLINGS = {
    "tens": [f"{u}.{f:02d}" for u in range(10) for f in range(100)],
    "digits": FRACTION_TOKENS,
    "integer": [str(i) for i in range(10, 101)] + FRACTION_TOKENS,
    "tenths": [f"{u}.{t}" for u in range(10) for t in range(10)],
}


def score_tokens(spelling: str) -> list[str]:
    return SPELLINGS[spelling]


def digit_pairs(tokenizer) -> list[list[int]]:
    """Every bare digit followed by a bare digit: no "tens" target holds one, but a weak model's greedy answer still
    ran on ("<answer>8888...82.52", a parse failure for every IAA image); banning the pairs in the tiny model's
    generation config keeps its answers in the spelling it was taught (HF generate: evaluation, scorer, checks)."""
    digits = tokenizer.convert_tokens_to_ids([str(d) for d in range(10)])
    return [[a, b] for a in digits for b in digits]


# Text the tokenizer learns its merges from, besides the prompts and the contract: the vocabulary of rationales.
TOKENIZER_CORPUS = Path(__file__).with_name("tokenizer_corpus.txt")


def tokenizer_corpus() -> list[str]:
    text = [line for line in TOKENIZER_CORPUS.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    numbers = [f"<answer>{x / 4:.2f}</answer>" for x in range(401)]
    return [SYSTEM_PROMPT, *QUESTIONS.values(), *text, " ".join(ATTRIBUTES).replace("_", " "),
            *CONTRACT_TOKENS, *numbers]


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary half-dimension in Qwen's 1:1.5:1.5 ratio (7B: 16/24/24)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tokenizer(vocab_size: int, score_spelling: str = "tens"):
    """A byte-level BPE tokenizer (Qwen2's pre-tokenizer) trained on ``tokenizer_corpus`` - deterministic."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    scratch = Tokenizer(BPE())
    scratch.pre_tokenizer = pre_tokenizers.Sequence([  # Qwen2's own, so the merges are the ones it can apply
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    scratch.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS) - len(CONTRACT_TOKENS)
                                  - len(score_tokens(score_spelling)),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    scratch.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    model = json.loads(scratch.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                          for t in CONTRACT_TOKENS + score_tokens(score_spelling)])
    return tokenizer


def build_tiny_model(cfg: TinyModelConfig, out_dir: str | Path, min_pixels: int, max_pixels: int) -> Path:
    """Build and save a randomly initialised tiny Qwen2.5-VL (model, processor, generation config) to ``out_dir``.

    Same ``cfg`` -> byte-identical weights and tokenizer, so the DVC output hash is stable across rebuilds."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(cfg.vocab_size, cfg.score_tokens)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if len(tokenizer) > cfg.vocab_size:
        raise ValueError(f"model.tiny.vocab_size={cfg.vocab_size} is smaller than the tokenizer ({len(tokenizer)})")
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": _mrope_section(head_dim)},
            bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=cfg.vision_depth, hidden_size=cfg.vision_hidden_size, patch_size=cfg.vision_patch_size,
            intermediate_size=cfg.vision_intermediate_size, num_heads=cfg.vision_num_heads,
            out_hidden_size=cfg.hidden_size, fullatt_block_indexes=[cfg.vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"], do_sample=False,
        bad_words_ids=digit_pairs(tokenizer) if cfg.score_tokens in ("tens", "tenths") else None,
    )
    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels, "patch_size": cfg.vision_patch_size}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=qwen2_5_vl_chat_template,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


class ModelLoadError(TatarError):
    """A base model or checkpoint cannot be resolved or loaded; the message says why and what to do."""


def resolve_model(path_or_id: str | Path) -> str:
    """The loadable location behind ``path_or_id``: a folder holding ``base.json`` points elsewhere."""
    reference = Path(path_or_id) / REFERENCE_FILE
    if reference.is_file():
        return json.loads(reference.read_text())["resolved"]
    # Absolute, so a LoRA adapter saved from this model names a base that loads from any working directory.
    return str(Path(path_or_id).resolve()) if Path(path_or_id).is_dir() else str(path_or_id)


def _check_available(location: str) -> None:
    """Fail early, in one line, when a model is neither a local folder nor downloadable/cached."""
    from transformers import AutoConfig

    if Path(location).is_dir():
        if not any((Path(location) / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise ModelLoadError(f"{location}: not a Hugging Face model folder (no config.json or adapter_config.json)")
        return
    try:
        AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as exc:
        import huggingface_hub.constants as hub

        hint = ("HF_HUB_OFFLINE=1 is set and it is not in the local Hugging Face cache; download it first "
                f"(`hf download {location}`) or set model.base to a local folder") if hub.HF_HUB_OFFLINE else \
               f"the hub did not provide it ({str(exc).splitlines()[0]})"
        raise ModelLoadError(f"model {location!r}: no such local folder, and {hint}") from None


def torch_dtype(name: str):
    """``auto`` = bfloat16 on a GPU that supports it, else float32 (CPU training in bf16 is slow and lossy)."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def set_pixel_budget(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Bound the pixels (hence visual tokens) per image of a Qwen2-VL-family processor, whose ``size`` is
    ``{shortest_edge: min pixels, longest_edge: max pixels}``. Other processors size images their own way."""
    from transformers.image_processing_utils import SizeDict

    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if (min_pixels is None and max_pixels is None) or not hasattr(image_processor, "merge_size") or size is None:
        return
    image_processor.size = SizeDict(shortest_edge=min_pixels or size["shortest_edge"],
                                    longest_edge=max_pixels or size["longest_edge"])


def load_model_and_processor(path_or_id: str | Path, dtype: str = "auto", min_pixels: int | None = None,
                             max_pixels: int | None = None, attn_implementation: str | None = None,
                             device: str | None = None):
    """Load any ``AutoModelForImageTextToText`` VLM and its processor; the pixel budget overrides the saved one.

    ``path_or_id`` may be a checkpoint folder, a ``base.json`` reference folder, or a hub id. Raises
    ``ModelLoadError`` (one clear line) when it cannot be found, e.g. a hub id offline."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    location = resolve_model(path_or_id)
    _check_available(location)
    kwargs = {"dtype": torch_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        processor = AutoProcessor.from_pretrained(location)
        model = AutoModelForImageTextToText.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:  # e.g. a folder with config.json but no weights: a save that never finished
        raise ModelLoadError(f"{location}: cannot load the model ({str(exc).splitlines()[0]}); is it a complete "
                             "checkpoint? re-run the stage that writes it") from None
    set_pixel_budget(processor, min_pixels, max_pixels)
    if device:
        model.to(device)
    return model.eval(), processor


def load_from_config(path_or_id: str | Path, cfg: ModelConfig, device: str | None = None, dtype: str | None = None):
    return load_model_and_processor(path_or_id, dtype=dtype or cfg.torch_dtype, min_pixels=cfg.min_pixels,
                                    max_pixels=cfg.max_pixels, attn_implementation=cfg.attn_implementation,
                                    device=device)


def write_reference(base: str, out_dir: str | Path) -> dict:
    """Record which existing model the pipeline starts from (checked now, so sft cannot fail on a typo later)."""
    _check_available(base)
    local = Path(base).is_dir()
    reference = {"base": base, "resolved": str(Path(base).resolve()) if local else base,
                 "kind": "local folder" if local else "hub id"}
    if local:
        from tatar.hashing import tree_hash

        reference["sha256"] = tree_hash(base)
    else:
        from huggingface_hub import HfApi

        try:  # pin the exact hub revision when the hub answers; offline, the cached copy is what gets used
            reference["revision"] = HfApi().model_info(base).sha
        except Exception:  # noqa: BLE001 - offline or no network: the cached snapshot stands
            reference["revision"] = None
    write_json(Path(out_dir) / REFERENCE_FILE, reference)
    return reference


def run(params: Params) -> None:
    """Stage base_model: build the tiny model, or write a checked reference to an existing one."""
    import shutil

    cfg = params.model
    if cfg.base != "tiny":
        _check_available(cfg.base)  # before removing the previous output: a typo must not cost the old base
    shutil.rmtree(BASE_DIR, ignore_errors=True)
    if cfg.base == "tiny":
        build_tiny_model(cfg.tiny, BASE_DIR, cfg.min_pixels, cfg.max_pixels)
        from transformers import AutoModelForImageTextToText

        n = AutoModelForImageTextToText.from_pretrained(BASE_DIR).num_parameters()
        print(f"base_model: built tiny Qwen2.5-VL ({n / 1e6:.2f}M parameters) in {BASE_DIR}")
    else:
        ref = write_reference(cfg.base, BASE_DIR)
        print(f"base_model: {ref['kind']} {ref['base']} recorded in {BASE_DIR / REFERENCE_FILE}")
