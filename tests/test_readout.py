"""The expected-score readout (tatar.readout): where the tens digit is, what its expectation gives, and that the
generation path captures the probabilities greedy decoding saw without changing the text."""

import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from tatar.inference import Completion, complete, generate
from tatar.readout import digit_ids, expected_score, tens_index, tens_position
from tatar.scorer import ScoreResult, vllm_completion


@pytest.mark.parametrize(("pieces", "where"), [
    (["<answer>", "7", "2.35", "</answer>"], 1),  # the tiny tokenizer's "tens" spelling
    (["<", "answer", ">", "7", "2", ".", "3", "5", "</", "answer", ">"], 3),  # Qwen2: one token per digit
    (["<think>", "dull", "</think>", "\n", "<answer>", " ", "\n", "4", "1.00"], 7),  # whitespace skipped
    (["<answer>", "5", "0.00", "</answer>", "<answer>", "8", "3.00"], 5),  # the last answer counts
    (["<", "answer", ">7", "2"], None),  # the digit shares a token with the tag
    (["<answer>", " 7", "2.35"], None),  # a space-prefixed digit: its alternatives are other tokens
    (["<answer>", "about", " 70"], None),
    (["<answer>", "72", ".35"], None),  # a tokenizer that merges digits
    (["no", " answer"], None),
    (["<answer>"], None),
])
def test_tens_position(pieces, where):
    assert tens_position(pieces) == where


def test_expected_score_replaces_only_the_tens_digit():
    assert expected_score(72.35, [0] * 7 + [1] + [0] * 2) == pytest.approx(72.35)
    assert expected_score(72.35, [0] * 6 + [0.5, 0.5] + [0] * 2) == pytest.approx(67.35)
    assert expected_score(72.35, [0] * 6 + [2, 2] + [0] * 2) == pytest.approx(67.35)  # any scale
    assert expected_score(10.0, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) == pytest.approx(90.0)
    for score in (8.74, 100.0, 0.0):  # no tens digit to read (or a three-digit answer): greedy stands
        assert expected_score(score, [0.1] * 10) == score
    assert expected_score(72.35, None) == 72.35 and expected_score(72.35, [0.0] * 10) == 72.35


def test_digit_ids(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = digit_ids(tok)
    assert ids is not None and [tok.decode([i]) for i in ids] == [str(d) for d in range(10)]
    merged = SimpleNamespace(unk_token_id=0, convert_tokens_to_ids=lambda t: 0 if t in "05" else ord(t))
    assert digit_ids(merged) is None


class ScriptedModel:
    """Stands in for a VLM's ``generate``: writes ``<answer>7 2.35</answer>`` for every row and shows the logits
    processors, at the tens step, logits that put 0.25 / 0.5 / 0.25 on the digits 6 / 7 / 8."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, tokenizer):
        self.script = tokenizer.convert_tokens_to_ids(["<answer>", "7", "2.35", "</answer>"])
        self.digits = digit_ids(tokenizer)
        self.vocab = len(tokenizer)

    def generate(self, input_ids, logits_processor, max_new_tokens, **kwargs):
        rows = input_ids.shape[0]
        for step, token in enumerate(self.script):
            scores = torch.full((rows, self.vocab), -1e4)
            scores[:, token] = 0.0
            if step == 1:
                scores[:, self.digits[6]] = scores[:, self.digits[8]] = -math.log(2)
            logits_processor(input_ids, scores)
        return torch.cat([input_ids, torch.tensor([self.script] * rows)], dim=1)


def test_complete_reads_the_probabilities_at_the_tens_token(tiny_model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    images = [Image.new("RGB", (112, 112), (g, g, g)) for g in (40, 200, 90)]
    out = complete(ScriptedModel(processor.tokenizer), processor, images, "iqa", batch_size=2, tens_probs=True)
    assert [c.text for c in out] == ["<answer>72.35</answer>"] * 3
    for c in out:
        assert c.tens_probs == pytest.approx([0] * 6 + [0.25, 0.5, 0.25, 0], abs=1e-6)
        result = ScoreResult.from_completion("x.png", "iqa", c)
        assert result.score == pytest.approx(72.35) and result.raw == c.text  # E[tens] = 7: the same score


def test_capturing_probabilities_leaves_greedy_text_alone(tiny_model_dir):
    """The real tiny model: the same greedy texts with and without the capture."""
    from tatar.modeling import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_model_dir), device="cpu")
    images = [Image.new("RGB", (112, 112), (g, 30, 255 - g)) for g in (0, 120, 250)]
    with_probs = complete(model, processor, images, "iqa", batch_size=3, max_new_tokens=12, tens_probs=True)
    assert [c.text for c in with_probs] == generate(model, processor, images, "iqa", batch_size=3, max_new_tokens=12)


def test_vllm_completion_uses_the_top_logprobs(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    digits = digit_ids(tok)
    ids = tok.convert_tokens_to_ids(["<answer>", "4", "5.00", "</answer>"])
    top = {digits[4]: SimpleNamespace(logprob=math.log(0.6)), digits[5]: SimpleNamespace(logprob=math.log(0.2)),
           ids[2]: SimpleNamespace(logprob=math.log(0.1))}  # not a digit: ignored
    output = SimpleNamespace(text="<answer>45.00</answer>", token_ids=ids, logprobs=[{}, top, {}, {}])
    c = vllm_completion(output, tok, digits)
    assert c.tens_probs == pytest.approx([0, 0, 0, 0, 0.6, 0.2, 0, 0, 0, 0])
    assert ScoreResult.from_completion("x", "iqa", c).score == pytest.approx(45.0 + 10 * 0.2 / 0.8)
    assert tens_index(tok, ids) == 1
    assert vllm_completion(output, tok, None) == Completion(output.text)  # greedy readout: no probabilities


def test_scorer_refuses_the_expected_readout_without_digit_tokens_when_it_loads():
    from tatar.modeling import ModelLoadError
    from tatar.scorer import readout_digits

    merged = SimpleNamespace(unk_token_id=0, convert_tokens_to_ids=lambda t: 0)
    assert readout_digits(merged, "ckpt", "greedy") is None
    with pytest.raises(ModelLoadError, match="ckpt: the expected readout needs one token per digit"):
        readout_digits(merged, "ckpt", "expected")
