"""Rewards against hand-computed values, routing, the split-group equivalence and the benchmark."""

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tatar import rewards
from tatar.config import GRPOConfig
from tatar.rewards import (
    build_reward_funcs,
    format_reward,
    gaussian_score_reward,
    thurstone_rank_reward,
    thurstone_scores,
    thurstone_scores_python,
)

LN_EPS = -math.log(1e-6)


def chat(text):
    return [{"role": "assistant", "content": text}]


def answer(score, think="Sharp and clean."):
    return f"<think>{think}</think>\n<answer>{score:.2f}</answer>"


# ------------------------------------------------------------------------------------------- format
@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>fine</think>\n<answer>42.50</answer>", 1.0),
        ("<answer>7</answer>", 1.0),  # think is optional
        ("<answer>42.5 points</answer>", 0.0),
        ("<answer>42</answer><answer>43</answer>", 0.0),  # exactly one answer
        ("<think>about 40</think>", 0.0),
        ("42.5", 0.0),
        ("<answer></answer>", 0.0),
    ],
)
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]
    assert format_reward([chat(text)]) == [expected]


def test_completion_content_parts():
    content = [{"type": "text", "text": "<answer>"}, {"type": "text", "text": "5</answer>"}]
    parts = [{"role": "assistant", "content": content}]
    assert format_reward([parts]) == [1.0]


# --------------------------------------------------------------------------------------- Gaussian
def test_gaussian_exact_and_threshold():
    out = gaussian_score_reward([answer(70), answer(78.75), answer(61.25)], task=["iqa"] * 3, score_100=[70] * 3,
                                alpha_iqa=0.0)
    assert out == pytest.approx([1.0, 0.5, 0.5], abs=1e-12)


def test_gaussian_alpha_widens_by_hand():
    d, alpha = 30.0, 0.8
    sigma = 8.75 / math.sqrt(2 * math.log(2)) * (1 + alpha * d / 100)
    expected = math.exp(-(d**2) / (2 * sigma**2))
    [got] = gaussian_score_reward([chat(answer(40))], task=["iqa"], score_100=[70.0])
    assert got == pytest.approx(expected, rel=1e-12)
    [narrow] = gaussian_score_reward([answer(40)], task=["iqa"], score_100=[70.0], alpha_iqa=0.0)
    assert narrow < got
    # IAA uses its own alpha (2.0 by default): wider still.
    [iaa] = gaussian_score_reward([answer(40)], task=["iaa"], score_100=[70.0])
    assert iaa > got


def test_gaussian_zero_when_off_scale_or_unparseable():
    # 130 is no answer on 0-100 (it used to be clipped to 100 and earn the full reward); see test_rewards_adversarial.
    out = gaussian_score_reward([answer(130), "<answer>high</answer>", "no tags", answer(100)], task=["iqa"] * 4,
                                score_100=[100.0] * 4)
    assert out == [0.0, 0.0, 0.0, 1.0]


def test_gaussian_word_limit_cutoff():
    def with_words(n):  # "<think>w w ... w</think>\n<answer>50.00</answer>" has exactly n words
        return "<think>" + " ".join(["w"] * (n - 1)) + "</think>\n<answer>50.00</answer>"

    assert rewards.word_count(with_words(65)) == 65
    out = gaussian_score_reward([with_words(65), with_words(66)], task=["iqa", "iqa"], score_100=[50.0, 50.0])
    assert out == [1.0, 0.0]
    # IAA has no cap by default (slow thinking); a cap from params applies.
    assert gaussian_score_reward([with_words(300)], task=["iaa"], score_100=[50.0]) == [1.0]
    assert gaussian_score_reward([with_words(300)], task=["iaa"], score_100=[50.0], max_words_iaa=200) == [0.0]


# -------------------------------------------------------------------------------------- Thurstone
def hand_rank(q, gt_i, others, v_i, link="normal"):
    """Reward of one completion by the DESIGN.md formula, each term written out."""
    num = den = 0.0
    for mu_j, v_j, gt_j in others:
        p_gt = 1 / (1 + math.exp(-(gt_i - gt_j) / 0.08))
        z = (q - mu_j) / math.sqrt(v_i + v_j + 1e-6)
        p = 0.5 * math.erfc(-z / math.sqrt(2)) if link == "normal" else 1 / (1 + math.exp(-z))
        p = min(max(p, 1e-6), 1 - 1e-6)
        w = math.exp(-abs(gt_i - gt_j) / 0.12)
        num += w * -(p_gt * math.log(p) + (1 - p_gt) * math.log(1 - p))
        den += w
    return min(max(1 - num / den / LN_EPS, 0.0), 1.0)


def batch(rows):
    """rows: (id, task, gt_100, completion text) -> TRL-style keyword columns."""
    ids, tasks, gts, texts = zip(*rows)
    return {"completions": [chat(t) for t in texts], "task": list(tasks), "score_100": list(gts), "id": list(ids)}


def test_thurstone_hand_computed():
    # Image a (gt 60): predictions 70 and 50 -> mu 0.6, var 0.01. Image b (gt 40): 40, 40 -> mu 0.4, var 0.
    out = thurstone_rank_reward(**batch([("a", "iaa", 60, answer(70)), ("a", "iaa", 60, answer(50)),
                                         ("b", "iaa", 40, answer(40)), ("b", "iaa", 40, answer(40))]))
    expected = [hand_rank(0.7, 0.6, [(0.4, 0.0, 0.4)], 0.01), hand_rank(0.5, 0.6, [(0.4, 0.0, 0.4)], 0.01),
                hand_rank(0.4, 0.4, [(0.6, 0.01, 0.6)], 0.0), hand_rank(0.4, 0.4, [(0.6, 0.01, 0.6)], 0.0)]
    assert out == pytest.approx(expected, abs=1e-12)
    # Soft targets: p_gt(a > b) = 0.92, so the over-confident 70 (p_pred 0.999) scores below 50 (p_pred 0.84).
    assert out[1] > out[0]


def test_thurstone_logistic_link():
    rows = batch([("a", "iaa", 60, answer(70)), ("a", "iaa", 60, answer(50)), ("b", "iaa", 40, answer(45))])
    out = thurstone_rank_reward(**rows, link="logistic")
    assert out[0] == pytest.approx(hand_rank(0.7, 0.6, [(0.45, 0.0, 0.4)], 0.01, link="logistic"), abs=1e-12)
    assert out != thurstone_rank_reward(**rows)


def test_thurstone_unparseable_gets_zero_and_is_excluded_from_stats():
    clean = [("a", "iaa", 60, answer(70)), ("a", "iaa", 60, answer(50)), ("b", "iaa", 40, answer(40))]
    broken = clean + [("a", "iaa", 60, "<answer>sixty</answer>"), ("b", "iaa", 40, "I cannot tell")]
    out = thurstone_rank_reward(**batch(broken))
    assert out[3:] == [0.0, 0.0]
    assert out[:3] == pytest.approx(thurstone_rank_reward(**batch(clean)), abs=1e-15)


def test_thurstone_single_iaa_image_gives_none_and_warns(caplog):
    rows = batch([("a", "iaa", 60, answer(70)), ("a", "iaa", 60, answer(50)), ("q", "iqa", 30, answer(30))])
    with caplog.at_level(logging.WARNING, logger="tatar.rewards"):
        assert thurstone_rank_reward(**rows) == [None, None, None]
    assert "need >= 2 to rank" in caplog.text


def test_thurstone_no_parsed_opponent_gives_none():
    out = thurstone_rank_reward(**batch([("a", "iaa", 60, answer(70)), ("b", "iaa", 40, "garbled")]))
    assert out == [None, 0.0]


def test_thurstone_iqa_rows_are_none():
    out = thurstone_rank_reward(**batch([("q", "iqa", 30, answer(30)), ("a", "iaa", 60, answer(70)),
                                         ("b", "iaa", 40, answer(40))]))
    assert out[0] is None and all(isinstance(r, float) for r in out[1:])


def test_thurstone_ties_in_ground_truth():
    # Equal gt: p_gt = 0.5 and w = 1, so the best a completion can do is predict the other image's mean (BCE = ln 2).
    out = thurstone_rank_reward(**batch([("a", "iaa", 50, answer(50)), ("b", "iaa", 50, answer(50)),
                                         ("c", "iaa", 50, answer(80))]))
    assert out[0] == pytest.approx(out[1])
    tie_pair = 1 - math.log(2) / LN_EPS
    assert out[0] < tie_pair and out[2] < out[0]
    two = thurstone_rank_reward(**batch([("a", "iaa", 50, answer(50)), ("b", "iaa", 50, answer(50))]))
    assert two == pytest.approx([tie_pair, tie_pair], abs=1e-12)


def test_vectorised_equals_pairwise_loop():
    rng = np.random.default_rng(1)
    image = np.repeat(np.arange(12), 5)
    gt = np.round(rng.uniform(0, 1, 12), 1)[image]  # rounding creates ground-truth ties
    pred = rng.uniform(0, 1, len(image))
    pred[rng.random(len(pred)) < 0.2] = np.nan
    for link in ("normal", "logistic"):
        fast = thurstone_scores(pred, gt, image, link=link)
        slow = np.array(thurstone_scores_python(pred.tolist(), gt.tolist(), image.tolist(), link=link))
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------- split groups
SPLIT_ROWS = ([("q1", "iqa", 20, answer(25))] * 2 + [("a", "iaa", 70, answer(p)) for p in (65, 75, 80)]
              + [("b", "iaa", 45, answer(p)) for p in (40, 55, 30)]
              + [("c", "iaa", 52, answer(p)) for p in (50, 60, 45)])
SPLIT = 6  # process 0 holds the IQA rows, image a and one of b's completions; process 1 the rest of b, and c


def test_split_group_across_processes_matches_one_process(monkeypatch):
    """Two simulated processes (the gather monkeypatched): together they return exactly the single-process
    rewards; each computing on its own slice would not."""
    full = batch(SPLIT_ROWS)
    single = thurstone_rank_reward(**full)
    parts = [batch(SPLIT_ROWS[:SPLIT]), batch(SPLIT_ROWS[SPLIT:])]

    local_rows = []  # what each process contributes to the gather
    monkeypatch.setattr(rewards, "gather_rows", lambda local: (local_rows.append(local) or local, 0))
    isolated = [r for part in parts for r in thurstone_rank_reward(**part)]
    assert isolated != pytest.approx(single)  # per-process ranking is wrong: the test can fail

    everything = local_rows[0] + local_rows[1]
    gathered = []
    for rank, part in enumerate(parts):
        offset = len(local_rows[0]) if rank else 0
        monkeypatch.setattr(rewards, "gather_rows", lambda local, offset=offset: (everything, offset))
        gathered += thurstone_rank_reward(**part)
    assert gathered == single


WORKER = """
import json
import sys
import torch.distributed as dist
from test_rewards import SPLIT, SPLIT_ROWS, batch
from tatar.rewards import thurstone_rank_reward
rank = int(sys.argv[1])
# A file rendezvous (no fixed port to race other programs for); the rewards only need an initialised group.
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2)
part = SPLIT_ROWS[:SPLIT] if rank == 0 else SPLIT_ROWS[SPLIT:]
print("REWARDS " + json.dumps(thurstone_rank_reward(**batch(part))), flush=True)
# Leave together: a process exiting while gloo still serves its peer ended once in "terminate called without an
# active exception" (CI, 2-core machine under load).
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_real_processes_match_one(tmp_path):
    """The same split across two real processes (torch.distributed with gloo on CPU)."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(tmp_path / "rendezvous")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    gathered = [r for out, _ in outs for r in json.loads(out.split("REWARDS ")[1])]
    assert gathered == thurstone_rank_reward(**batch(SPLIT_ROWS))


# ---------------------------------------------------------------------------------------- routing
def test_routing_names_weights_and_masks():
    cfg = GRPOConfig(rewards_iqa={"format": 0.5, "gaussian_score": 1.0},
                     rewards_iaa={"format": 0.25, "thurstone_rank": 2.0})
    funcs, weights = build_reward_funcs(cfg)
    assert [f.__name__ for f in funcs] == ["iqa/format", "iqa/gaussian_score", "iaa/format", "iaa/thurstone_rank"]
    assert weights == [0.5, 1.0, 0.25, 2.0]
    cols = batch([("q", "iqa", 30, answer(30)), ("a", "iaa", 60, answer(70)), ("b", "iaa", 40, "<think>hmm</think>")])
    logged = {}
    out = {f.__name__: f(**cols, log_metric=lambda k, v: logged.setdefault(k, v)) for f in funcs}
    assert out["iqa/format"] == [1.0, None, None]
    assert out["iqa/gaussian_score"] == [1.0, None, None]
    assert out["iaa/format"] == [None, 1.0, 0.0]
    assert out["iaa/thurstone_rank"][0] is None and out["iaa/thurstone_rank"][2] == 0.0
    assert logged == {"iqa/parse_rate": 1.0, "iqa/think_words": 3.0, "iaa/parse_rate": 0.5, "iaa/think_words": 2.0}


def test_routing_binds_params_and_rejects_unknown_names():
    cfg = GRPOConfig(rewards_iqa={"gaussian_score": 1.0}, rewards_iaa={})
    cfg.gaussian.alpha_iqa = 0.0
    [func], _ = build_reward_funcs(cfg)
    assert func(**batch([("q", "iqa", 70, answer(78.75))])) == pytest.approx([0.5])
    with pytest.raises(ValueError, match="grpo.rewards_iaa: unknown reward 'rank'"):
        build_reward_funcs(GRPOConfig(rewards_iaa={"rank": 1.0}))


def test_bench_prints_figures(capsys):
    ratio = rewards.run_bench(images=16, generations=4, repeats=2)
    out = capsys.readouterr().out
    diff = float(out.split("max abs difference:")[1].split()[0])
    assert diff <= 1e-9 and ratio > 1 and out.strip().splitlines()[-1].startswith("ratio: ")
