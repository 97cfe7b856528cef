"""The tiny Qwen2.5-VL builder, model loading (local, reference, missing hub id) and batched greedy generation."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tatar.config import ModelConfig, TinyModelConfig
from tatar.hashing import file_hashes
from tatar.inference import generate
from tatar.modeling import (
    CONTRACT_TOKENS,
    SPECIAL_TOKENS,
    ModelLoadError,
    build_tiny_model,
    load_model_and_processor,
    write_reference,
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (80 + 8 * i, 96, 3), dtype=np.uint8)) for i in range(n)]


def test_loads_back_as_auto_classes(tiny):
    model, processor = tiny
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert model.config.text_config.vocab_size == TinyModelConfig().vocab_size
    assert model.num_parameters() < 2_000_000


def test_hub_kernels_are_off_unless_asked_for(tiny, tiny_model_dir, monkeypatch):
    # transformers turns them on by default when `kernels` is installed; on a GPU they download at run time
    model, _ = tiny
    assert model.use_kernels is False
    pytest.importorskip("kernels")
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")
    model, _ = load_model_and_processor(tiny_model_dir)
    assert model.use_kernels is True


def test_contract_tags_are_ordinary_tokens(tiny):
    """Special tokens vanish from TRL's decoded completions; the contract tags must survive decoding."""
    tokenizer = tiny[1].tokenizer
    text = "<think>The image is sharp.</think>\n<answer>42.50</answer>"
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    for tag in CONTRACT_TOKENS:
        assert tag not in tokenizer.all_special_tokens
        assert len(tokenizer(tag).input_ids) == 1
    assert set(SPECIAL_TOKENS) <= set(tokenizer.get_vocab())
    assert tokenizer.eos_token == "<|im_end|>"


def test_chat_template_gets_trl_training_template(tiny):
    """The template is Qwen2.5-VL's own, so TRL swaps in its assistant-masking variant as for the real model."""
    from trl.chat_template_utils import get_training_chat_template, qwen2_5_vl_training_chat_template

    assert get_training_chat_template(tiny[1]) == qwen2_5_vl_training_chat_template


@pytest.mark.parametrize(("spelling", "expected"), [("tens", ["7", "2.35"]), ("tenths", ["7", "2.3", "5"]),
                                                    ("digits", ["7", "2", ".35"]), ("integer", ["72", ".35"])])
def test_score_spelling_puts_the_ranking_in_the_first_token(spelling, expected):
    from tatar.modeling import build_tokenizer

    tokenizer = build_tokenizer(3072, spelling)
    assert tokenizer.tokenize("<answer>72.35</answer>") == ["<answer>", *expected, "</answer>"]
    assert tokenizer.decode(tokenizer("<answer>5.07</answer>").input_ids) == "<answer>5.07</answer>"


def test_pixel_budget_bounds_image_tokens(tiny, tiny_model_dir):
    big_image = _images(1)[0].resize((640, 480))

    def patches(processor):
        out = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[big_image])
        return int(out["image_grid_thw"].prod())

    assert patches(tiny[1]) <= ModelConfig().max_pixels // (14 * 14)  # the budget saved with the tiny model
    _, wider = load_model_and_processor(tiny_model_dir, max_pixels=28 * 28 * 64)  # overridden at load time
    assert ModelConfig().max_pixels // (14 * 14) < patches(wider) <= 28 * 28 * 64 // (14 * 14)


def test_generate_batched_equals_one_by_one(tiny):
    model, processor = tiny
    images = _images(3)
    batched = generate(model, processor, images, "iqa", batch_size=3, max_new_tokens=6)
    single = [generate(model, processor, [im], "iqa", max_new_tokens=6)[0] for im in images]
    assert len(batched) == 3 and batched == single
    mixed = generate(model, processor, images, ["iqa", "iaa", "iqa"], batch_size=2, max_new_tokens=6)
    assert len(mixed) == 3
    with pytest.raises(ValueError, match="3 images but 2 tasks"):
        generate(model, processor, images, ["iqa", "iaa"])


def test_build_is_deterministic_and_seeded(tiny_model_dir, tmp_path):
    cfg = ModelConfig()
    again = build_tiny_model(cfg.tiny, tmp_path / "again", cfg.min_pixels, cfg.max_pixels)
    assert file_hashes(again) == file_hashes(tiny_model_dir)
    other = build_tiny_model(cfg.tiny.model_copy(update={"seed": 1}), tmp_path / "other", cfg.min_pixels,
                             cfg.max_pixels)
    assert file_hashes(other)["model.safetensors"] != file_hashes(tiny_model_dir)["model.safetensors"]


def test_missing_hub_id_offline_is_one_clear_error():
    with pytest.raises(ModelLoadError, match="no such local folder.*HF_HUB_OFFLINE") as info:
        load_model_and_processor("nobody-here/no-such-model-xyz")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_reference_to_local_model_loads_through_base_dir(tiny_model_dir, tmp_path):
    ref = write_reference(str(tiny_model_dir), tmp_path / "base")
    assert ref["kind"] == "local folder" and len(ref["sha256"]) == 64
    assert json.loads((tmp_path / "base" / "base.json").read_text())["resolved"] == str(tiny_model_dir.resolve())
    model, _ = load_model_and_processor(tmp_path / "base", dtype="float32")
    assert model.dtype == torch.float32
    with pytest.raises(ModelLoadError, match="no config.json"):
        write_reference(str(tmp_path), tmp_path / "base2")


def test_stage_base_model_builds_tiny_and_keeps_it_on_a_bad_reference(tmp_path, monkeypatch, capsys):
    from tatar.config import Params
    from tatar.modeling import BASE_DIR, run

    monkeypatch.chdir(tmp_path)
    run(Params())
    assert "built tiny Qwen2.5-VL" in capsys.readouterr().out
    before = file_hashes(BASE_DIR)
    with pytest.raises(ModelLoadError, match="no-such-model"):
        run(Params.model_validate({"model": {"base": "nobody-here/no-such-model"}}))
    assert file_hashes(BASE_DIR) == before


def test_tens_spelling_never_generates_a_digit_after_a_digit(tiny):
    """The tiny model's generation config bans bare digit pairs (no "tens" target holds one), so a greedy answer
    cannot run on: a model biased towards the digit 8 still writes each digit once."""
    model, processor = tiny
    tok = processor.tokenizer
    digits = tok.convert_tokens_to_ids([str(d) for d in range(10)])
    assert [digits[8], digits[8]] in model.generation_config.bad_words_ids
    bias = torch.zeros(model.lm_head.weight.shape[0])
    bias[digits[8]] = 100.0  # every step prefers "8"
    head = model.lm_head
    model.lm_head = torch.nn.Sequential(head, _AddBias(bias))
    try:
        [text] = generate(model, processor, _images(1), "iqa", max_new_tokens=6)
    finally:
        model.lm_head = head
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert text.count("8") >= 3 and "88" not in text, text
    assert not any(a in digits and b in digits for a, b in zip(ids, ids[1:]))


class _AddBias(torch.nn.Module):
    def __init__(self, bias):
        super().__init__()
        self.bias = bias

    def forward(self, x):
        return x + self.bias
