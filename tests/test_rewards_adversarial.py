"""Completions that try to game the rewards earn nothing: off the 0-100 scale, two numbers or two answers, an
answer before the thinking, an empty answer, non-ASCII digits. Each gets 0 from every reward and is left out of
its image's ranking statistics; evaluation counts it as a parse failure and keeps the raw text."""

import math

import numpy as np
import pytest

from tatar.config import GRPOConfig
from tatar.inference import Completion
from tatar.parsing import contract_answer, parse_answer
from tatar.rewards import (
    build_reward_funcs,
    format_reward,
    gaussian_score_reward,
    thurstone_rank_reward,
    thurstone_scores,
    thurstone_scores_python,
)
from tatar.scorer import ScoreResult

THINK = "Soft light and a calm, balanced frame."


def good(score):
    return f"<think>{THINK}</think>\n<answer>{score}</answer>"


ADVERSARIAL = {
    "above 100": good("300"),
    "far above": good("1000"),
    "just above": good("100.01"),
    "negative": good("-5"),
    "exponent": good("1e3"),
    "exponent large": good("1e5"),
    "inf": good("inf"),
    "nan": good("nan"),
    "two numbers": good("72 80"),
    "two answers": f"<think>{THINK}</think>\n<answer>72</answer><answer>80</answer>",
    "answer in think": "<think>maybe <answer>20</answer></think>\n<answer>72</answer>",
    "answer before think": f"<answer>72</answer>\n<think>{THINK}</think>",
    "unclosed think": f"<think>{THINK}\n<answer>72</answer>",
    "empty answer": good(""),
    "blank answer": good("   "),
    "arabic-indic digits": good("\u0667\u0662"),  # ٧٢: float() reads 72.0
    "fullwidth digits": good("\uff17\uff12"),  # ７２
    "no answer": f"<think>{THINK}</think>",
}
IDS = list(ADVERSARIAL)


@pytest.mark.parametrize("kind", IDS)
def test_format_reward_is_zero(kind):
    assert format_reward([ADVERSARIAL[kind]]) == [0.0]


@pytest.mark.parametrize("kind", IDS)
def test_gaussian_reward_is_zero_even_on_a_matching_ground_truth(kind):
    # Ground truths at the scale ends, so clipping an off-scale prediction would have earned the full reward.
    for gt in (0.0, 72.0, 100.0):
        assert gaussian_score_reward([ADVERSARIAL[kind]], task=["iqa"], score_100=[gt]) == [0.0]
        assert gaussian_score_reward([ADVERSARIAL[kind]], task=["iaa"], score_100=[gt]) == [0.0]


def issue_batch(top_completion: str):
    """Three IAA images x 8 completions (the issue's case); one completion of the top image is ``top_completion``."""
    rows = []
    for image, gt, preds in (("top", 80.0, [78, 79, 80, 81, 82, 80, 79]),
                             ("mid", 55.0, [50, 55, 60, 52, 58, 54, 56, 53]),
                             ("low", 30.0, [25, 30, 35, 28, 32, 31, 29, 27])):
        rows += [(image, gt, good(f"{p:.2f}")) for p in preds]
    rows.insert(7, ("top", 80.0, top_completion))
    ids, gts, texts = zip(*rows)
    return {"completions": list(texts), "task": ["iaa"] * len(rows), "score_100": list(gts), "id": list(ids)}


@pytest.mark.parametrize("kind", IDS)
def test_ranking_gives_zero_and_leaves_the_siblings_untouched(kind):
    out = thurstone_rank_reward(**issue_batch(ADVERSARIAL[kind]))
    assert out[7] == 0.0
    # Excluded from the top image's mean and variance: the others score exactly as if it had not been written.
    clean = issue_batch(good("80.00"))
    without = {k: [v for i, v in enumerate(vals) if i != 7] for k, vals in clean.items()}
    expected = thurstone_rank_reward(**without)
    assert out[:7] + out[8:] == pytest.approx(expected, abs=1e-15)


def test_off_scale_answer_gains_no_advantage_over_its_siblings():
    """The issue's numbers: answering 300 / 1000 / 1e5 for the top image used to earn ~0.99 and pull its siblings'
    mean down; now it earns 0, below every sibling, and the siblings keep their rewards."""
    base = thurstone_rank_reward(**issue_batch(good("80.00")))
    for text in (good("300"), good("1000"), good("1e5")):
        out = thurstone_rank_reward(**issue_batch(text))
        siblings = out[:7]
        assert out[7] == 0.0 < min(siblings)
        assert siblings == pytest.approx(base[:7], abs=0.02)


def test_vectorised_ranking_treats_off_scale_inputs_as_invalid():
    image = np.repeat(np.arange(3), 4)
    gt = np.array([0.8, 0.55, 0.3])[image]
    pred = np.array([0.8, 0.79, 0.81, 3.0, 0.55, 0.5, 0.6, -0.2, 0.3, 0.25, np.inf, np.nan])
    fast = thurstone_scores(pred, gt, image)
    slow = np.array(thurstone_scores_python(pred.tolist(), gt.tolist(), image.tolist()))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert fast[[3, 7, 10, 11]].tolist() == [0.0, 0.0, 0.0, 0.0]
    valid = np.isfinite(pred) & (pred >= 0) & (pred <= 1)
    alone = thurstone_scores(pred[valid], gt[valid], image[valid])
    np.testing.assert_allclose(fast[valid], alone, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", [k for k in IDS if k not in ("two answers", "answer in think",
                                                               "answer before think", "unclosed think")])
def test_evaluation_counts_it_as_a_parse_failure_and_keeps_the_text(kind):
    result = ScoreResult.from_completion("img.png", "iaa", Completion(ADVERSARIAL[kind]))
    assert result.score is None and result.parse_failure and result.raw == ADVERSARIAL[kind]


@pytest.mark.parametrize("text, expected", [
    (good("0"), 0.0), (good("100"), 100.0), (good("100.00"), 100.0), (good("-0"), 0.0), ("<answer>72.5</answer>", 72.5),
])
def test_scale_ends_are_valid(text, expected):
    assert parse_answer(text) == expected and contract_answer(text) == expected
    assert format_reward([text]) == [1.0]


def test_iaa_length_floor_is_off_by_default_and_zeroes_short_iaa_completions():
    short, long = good("55.00"), "<think>" + " ".join(["word"] * 130) + "</think>\n<answer>55.00</answer>"
    kwargs = {"completions": [short, long, short, short, long, long], "task": ["iaa"] * 4 + ["iqa"] * 2,
              "score_100": [55.0, 55.0, 30.0, 30.0, 20.0, 20.0], "id": ["a", "a", "b", "b", "q", "q"]}
    assert GRPOConfig().min_words_iaa is None
    off = {f.__name__: f(**kwargs) for f in build_reward_funcs(GRPOConfig())[0]}
    on = {f.__name__: f(**kwargs) for f in build_reward_funcs(GRPOConfig(min_words_iaa=125))[0]}
    assert off["iaa/format"] == on["iaa/format"] == [1.0] * 4 + [None, None]  # format is not length-gated
    assert on["iaa/thurstone_rank"][0] == 0.0 and on["iaa/thurstone_rank"][2:4] == [0.0, 0.0]
    assert on["iaa/thurstone_rank"][1] == off["iaa/thurstone_rank"][1] > 0
    assert off["iaa/thurstone_rank"][0] > 0
    assert on["iqa/gaussian_score"] == off["iqa/gaussian_score"]  # IQA rows unaffected (their own cap: 65 words)


def test_iaa_think_words_are_logged_per_generation_batch():
    logged = {}
    funcs, _ = build_reward_funcs(GRPOConfig())
    kwargs = {"completions": [good("55.00"), good("300")], "task": ["iaa", "iaa"], "score_100": [55.0, 30.0],
              "id": ["a", "b"], "log_metric": lambda k, v: logged.__setitem__(k, v)}
    for f in funcs:
        f(**kwargs)
    assert logged["iaa/think_words"] == len(THINK.split())
    assert logged["iaa/parse_rate"] == 0.5  # the off-scale answer is no valid answer
    assert not math.isnan(logged["iaa/think_words"])
