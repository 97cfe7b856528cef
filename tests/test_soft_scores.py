"""sft.score_sigma: soft labels for an answer's tens digit (tatar.training.soft_scores)."""

import pytest
import torch
import torch.nn.functional as F

from tatar.modeling import build_tokenizer
from tatar.training.soft_scores import SoftScoreLabels, decade_masses


@pytest.mark.parametrize("score", [10.0, 12.0, 34.5, 69.99, 70.0, 70.01, 72.35, 99.99])
def test_decade_masses_sum_to_one_and_peak_at_the_true_decade(score):
    masses = decade_masses(score, 5.0)
    assert sum(masses) == pytest.approx(1.0)
    assert max(range(10), key=masses.__getitem__) == int(score // 10)  # greedy still answers the true digit


def test_decade_masses_are_ordinal_and_narrow_to_one_hot():
    m = decade_masses(72.35, 5.0)
    assert m[6] > m[8] > m[9] and m[6] > m[5] > m[4]  # more mass on nearer decades, the lower one nearer here
    assert decade_masses(72.35, 1e-3)[7] == pytest.approx(1.0)
    assert decade_masses(69.9, 5.0)[7] > decade_masses(60.1, 5.0)[7]  # neighbours of a boundary share it


def labels(tokenizer, *texts, prompt=3):
    rows = [[-100] * prompt + tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, rows))
    return torch.tensor([r + [-100] * (width - len(r)) for r in rows])


@pytest.mark.parametrize("spelling", ["tens", "digits"])
def test_finds_the_tens_digit_of_each_answer_in_a_spelling_that_gives_it_a_token(spelling):
    tok = build_tokenizer(3072, spelling)
    targets = labels(tok, "<think></think><answer>72.35</answer><|im_end|>",
                     "<think>soft and dull, 9 of 10 edges gone</think><answer>8.74</answer>",  # below 10: one-hot
                     "<think>crisp</think><answer>100.00</answer>",  # three digits: one-hot
                     "<think></think><answer>41.00</answer>")
    found = SoftScoreLabels(tok, 5.0).find(targets)
    assert [(row, tok.convert_ids_to_tokens(int(targets[row, t]))) for row, t, _ in found] == [(0, "7"), (3, "4")]
    assert found[0][2] == decade_masses(72.35, 5.0) and found[1][2] == decade_masses(41.0, 5.0)


def test_soft_loss_is_the_one_hot_loss_away_from_the_tens_digit_and_soft_on_it():
    tok = build_tokenizer(3072, "tens")
    targets = labels(tok, "<think></think><answer>72.35</answer><|im_end|>", "<think>a dull image</think>")
    keep = targets != -100
    torch.manual_seed(0)
    logits = torch.randn(int(keep.sum()), len(tok))
    one_hot = F.cross_entropy(logits, targets[keep], reduction="none")
    soft = SoftScoreLabels(tok, 5.0)
    assert soft.loss(logits, targets, keep).item() == pytest.approx(one_hot.sum().item() - one_hot[3].item() + (
        -(torch.tensor(decade_masses(72.35, 5.0)) * logits[3].log_softmax(-1)[soft.digits]).sum()).item(), rel=1e-5)
    assert SoftScoreLabels(tok, 1e-4).loss(logits, targets, keep).item() == pytest.approx(one_hot.sum().item(),
                                                                                          rel=1e-5)
