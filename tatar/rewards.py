"""GRPO rewards: format, adaptive Gaussian score (IQA) and Thurstone completion ranking (IAA).

Every reward has TRL's signature ``fn(completions, task=[...], score_100=[...], id=[...], **kwargs)`` and returns
one float per completion, or None where it does not apply (TRL then leaves that row out of the function's mean).
Keyword defaults are the paper's constants; the grpo stage binds the values from params and routes each reward to
one task with :func:`build_reward_funcs`, so TRL logs ``rewards/iqa/gaussian_score/mean`` and
``rewards/iaa/thurstone_rank/mean`` separately.

Predictions come from :func:`tatar.parsing.contract_answer` (strict: exactly one ``<answer>`` holding one number
on 0-100, any ``<think>`` closed before it) and live on the 0-100 scale; the ranking works on 0-1.

What an invalid completion gets (no answer, two answers or two numbers, an answer before the thinking, an empty
answer, non-ASCII digits, or a number off the scale: ``-5``, ``300``, ``1e3``, ``inf``, ``nan``): 0 from every
reward (format, Gaussian and ranking alike), and it is left out of its image's mean and variance, so one broken or
off-scale sample can neither drag its siblings' ranking nor be rewarded for leaving the scale. A parsed completion whose
ranking has nobody to be compared with (fewer than two IAA images in the generation batch, or every other image's
completions unparseable) gets None: no signal rather than a fake one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from scipy.special import expit, ndtr

from tatar.config import GRPOConfig
from tatar.parsing import contract_answer, think_words, word_count

log = logging.getLogger(__name__)

# Paper constants (DESIGN.md "GRPO").
THRESHOLD = 8.75  # Gaussian reward is 0.5 at this distance when alpha = 0
ALPHA = {"iqa": 0.8, "iaa": 2.0}
MAX_WORDS_IQA = 65  # fast thinking: a longer IQA completion earns no score reward
TAU, MARGIN, EPS = 0.08, 0.12, 1e-6


def completion_text(completion) -> str:
    """Text of one TRL completion: a plain string, or conversational ``[{"role": "assistant", "content": ...}]``
    whose content is a string or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def predictions(completions: Sequence) -> list[float | None]:
    """Valid 0-100 prediction per completion (None when the completion breaks the contract)."""
    return [contract_answer(completion_text(c)) for c in completions]


# ------------------------------------------------------------------------------------------- format
def format_reward(completions: Sequence, **kwargs) -> list[float]:
    """1 when the completion holds exactly one ``<answer>`` whose content is one number on 0-100 (think optional,
    before the answer when present), else 0."""
    return [float(p is not None) for p in predictions(completions)]


# --------------------------------------------------------------------------------------- Gaussian
def gaussian_score(pred: np.ndarray, gt: np.ndarray, alpha: np.ndarray | float, threshold: float = THRESHOLD):
    """exp(-d^2 / 2 sigma^2) with d = |pred - gt| on 0-100 and sigma = sigma0 (1 + alpha d / 100).

    sigma0 = threshold / sqrt(-2 ln 0.5), so the reward is exactly 0.5 at d = threshold when alpha = 0; alpha > 0
    widens the bell for far-off predictions so they still get a gradient."""
    d = np.abs(np.clip(pred, 0, 100) - np.clip(gt, 0, 100))
    sigma = threshold / math.sqrt(-2 * math.log(0.5)) * (1 + alpha * d / 100)
    return np.exp(-(d**2) / (2 * sigma**2))


def gaussian_score_reward(
    completions: Sequence,
    task: Sequence[str],
    score_100: Sequence[float],
    threshold: float = THRESHOLD,
    alpha_iqa: float = ALPHA["iqa"],
    alpha_iaa: float = ALPHA["iaa"],
    max_words_iqa: int | None = MAX_WORDS_IQA,
    max_words_iaa: int | None = None,
    **kwargs,
) -> list[float]:
    """Adaptive Gaussian score reward; 0 when unparseable or over the task's word limit."""
    alpha = {"iqa": alpha_iqa, "iaa": alpha_iaa}
    max_words = {"iqa": max_words_iqa, "iaa": max_words_iaa}
    rewards = []
    for completion, t, gt in zip(completions, task, score_100, strict=True):
        text = completion_text(completion)
        pred = contract_answer(text)
        too_long = max_words[t] is not None and word_count(text) > max_words[t]
        rewards.append(0.0 if pred is None or too_long else float(gaussian_score(pred, gt, alpha[t], threshold)))
    return rewards


# -------------------------------------------------------------------------------------- Thurstone
def _link(x: np.ndarray, link: str) -> np.ndarray:
    return ndtr(x) if link == "normal" else expit(x)


def thurstone_scores(pred: np.ndarray, gt: np.ndarray, image: np.ndarray, tau: float = TAU, margin: float = MARGIN,
                     eps: float = EPS, link: str = "normal") -> np.ndarray:
    """Ranking reward of each completion against every other image's completions (vectorised, no pair loop).

    ``pred`` (0-1; NaN or anything off [0, 1] is invalid), ``gt`` (0-1) and ``image`` (group label) are per
    completion.
    For completion k of image i and each other image j with a parsed prediction:
    p_gt = sigmoid((gt_i - gt_j) / tau), p_pred = F((q_k - mu_j) / sqrt(v_i + v_j + eps)) clipped to
    [eps, 1 - eps], w = exp(-|gt_i - gt_j| / margin) (near ties weigh most: they are the hard pairs), and
    r = clip(1 - sum_j w BCE(p_gt, p_pred) / sum_j w / -ln(eps), 0, 1). Returns 0 for unparseable completions
    and NaN for parsed ones with no other image to compare with."""
    pred = np.asarray(pred, dtype=float)
    labels, inverse = np.unique(image, return_inverse=True)
    with np.errstate(invalid="ignore"):
        parsed = (pred >= 0) & (pred <= 1)  # NaN, inf and off-scale predictions are invalid: reward 0, no stats
    count = np.bincount(inverse, weights=parsed, minlength=len(labels))
    q = np.where(parsed, pred, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.bincount(inverse, weights=q, minlength=len(labels)) / count
        var = np.bincount(inverse, weights=np.where(parsed, (q - mu[inverse]) ** 2, 0.0), minlength=len(labels)) / count
    gt_image = np.bincount(inverse, weights=gt, minlength=len(labels)) / np.bincount(inverse, minlength=len(labels))

    # Rows: completions; columns: opponent images with at least one parsed prediction, never the own image.
    opponent = (count > 0)[None, :] & (inverse[:, None] != np.arange(len(labels))[None, :])
    gap = gt[:, None] - gt_image[None, :]
    p_gt = expit(gap / tau)
    mu, var = np.nan_to_num(mu), np.nan_to_num(var)  # images without a parsed prediction are masked out below
    z = (q[:, None] - mu[None, :]) / np.sqrt(var[inverse][:, None] + var[None, :] + eps)
    p_pred = np.clip(_link(z, link), eps, 1 - eps)
    bce = -(p_gt * np.log(p_pred) + (1 - p_gt) * np.log(1 - p_pred))
    w = np.exp(-np.abs(gap) / margin) * opponent
    w_sum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        reward = np.clip(1 - (w * bce).sum(axis=1) / w_sum / -math.log(eps), 0.0, 1.0)
    reward[w_sum == 0] = np.nan
    reward[~parsed] = 0.0
    return reward


def thurstone_scores_python(pred: Sequence[float], gt: Sequence[float], image: Sequence, tau: float = TAU,
                            margin: float = MARGIN, eps: float = EPS, link: str = "normal") -> list[float]:
    """The same formula as :func:`thurstone_scores`, one pair at a time: the reference for tests and the benchmark."""
    groups: dict = {}
    def valid(p: float) -> bool:
        return 0.0 <= p <= 1.0  # False for NaN, inf and off-scale values

    for p, g, i in zip(pred, gt, image):
        groups.setdefault(i, {"gt": g, "preds": []})
        if valid(p):
            groups[i]["preds"].append(p)
    stats = {}
    for i, grp in groups.items():
        if grp["preds"]:
            mu = sum(grp["preds"]) / len(grp["preds"])
            stats[i] = (mu, sum((p - mu) ** 2 for p in grp["preds"]) / len(grp["preds"]), grp["gt"])
    cdf = (lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))) if link == "normal" else (lambda x: 1 / (1 + math.exp(-x)))
    rewards = []
    for q, g, i in zip(pred, gt, image):
        if not valid(q):
            rewards.append(0.0)
            continue
        v_i = stats[i][1]
        num = den = 0.0
        for j, (mu_j, v_j, gt_j) in stats.items():
            if j == i:
                continue
            p_gt = 1 / (1 + math.exp(-(g - gt_j) / tau))
            p_pred = min(max(cdf((q - mu_j) / math.sqrt(v_i + v_j + eps)), eps), 1 - eps)
            w = math.exp(-abs(g - gt_j) / margin)
            num += w * -(p_gt * math.log(p_pred) + (1 - p_gt) * math.log(1 - p_pred))
            den += w
        rewards.append(min(max(1 - num / den / -math.log(eps), 0.0), 1.0) if den > 0 else math.nan)
    return rewards


def gather_rows(rows: list) -> tuple[list, int]:
    """Every process's rows (in process order) and the index where this process's rows start.

    TRL hands each process its slice of the generation batch and a prompt's G completions may straddle
    processes; the ranking must see the whole batch. One ``all_gather_object`` on torch.distributed directly
    (accelerate and DeepSpeed both initialise it): accelerate's ``gather_object`` consults its own state, which can
    disagree with a process group started by another launcher. Single-process runs return the rows unchanged."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows, 0
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, rows)
    return [row for part in parts for row in part], sum(len(part) for part in parts[: dist.get_rank()])


def thurstone_rank_reward(
    completions: Sequence,
    task: Sequence[str],
    score_100: Sequence[float],
    id: Sequence[str],  # TRL passes dataset columns by name
    tau: float = TAU,
    margin: float = MARGIN,
    eps: float = EPS,
    link: str = "normal",
    **kwargs,
) -> list[float | None]:
    """Thurstone completion ranking over all IAA images of the generation batch (gathered across processes).

    IQA rows get None. With fewer than two IAA images in the batch every IAA row gets None and a warning."""
    local = [(p, g, i, t) for p, g, i, t in zip(predictions(completions), score_100, id, task, strict=True)]
    rows, offset = gather_rows(local)
    iaa = [k for k, row in enumerate(rows) if row[3] == "iaa"]
    result: list[float | None] = [None] * len(rows)
    n_images = len({rows[k][2] for k in iaa})
    if iaa and n_images < 2:
        log.warning("thurstone_rank_reward: %d IAA image(s) in the generation batch, need >= 2 to rank; no ranking "
                    "signal for this batch (mix tasks so each generation batch holds several IAA images)", n_images)
    elif iaa:
        pred = np.array([np.nan if rows[k][0] is None else rows[k][0] / 100 for k in iaa])
        gt = np.array([rows[k][1] / 100 for k in iaa])
        scores = thurstone_scores(pred, gt, np.array([rows[k][2] for k in iaa]), tau, margin, eps, link)
        for k, s in zip(iaa, scores):
            result[k] = None if np.isnan(s) else float(s)
    return result[offset : offset + len(local)]


REWARDS: dict[str, Callable[..., list[float | None]]] = {
    "format": format_reward,
    "gaussian_score": gaussian_score_reward,
    "thurstone_rank": thurstone_rank_reward,
}


# ---------------------------------------------------------------------------------------- routing
class TaskReward:
    """One reward restricted to one task's rows, named ``<task>/<reward>`` so TRL logs it per task.

    The wrapped reward always sees the whole batch (the ranking gathers across processes, a collective call every
    process must make) and rows of the other task are masked to None afterwards. ``min_words`` is a length floor:
    a row of this task with fewer words (the whole completion, as the paper's code counts) gets 0. With
    ``log_stats`` it also logs the task's valid-answer rate and mean think words through TRL's ``log_metric``, once
    per generation batch, so a collapsing IAA narrative shows in the training log."""

    def __init__(self, task: str, name: str, func: Callable, log_stats: bool = False, min_words: int | None = None):
        self.task, self.func, self.log_stats, self.min_words = task, func, log_stats, min_words
        self.__name__ = f"{task}/{name}"

    def __call__(self, completions, task, log_metric: Callable | None = None, **kwargs) -> list[float | None]:
        rewards = self.func(completions, task=task, **kwargs)
        mine = [t == self.task for t in task]
        texts = [completion_text(c) if m else "" for c, m in zip(completions, mine)]
        if self.log_stats and log_metric is not None and any(mine):
            own = [t for t, m in zip(texts, mine) if m]
            log_metric(f"{self.task}/parse_rate", float(np.mean([contract_answer(t) is not None for t in own])))
            log_metric(f"{self.task}/think_words", float(np.mean([think_words(t) for t in own])))
        if self.min_words is not None:
            rewards = [0.0 if r is not None and word_count(t) < self.min_words else r for r, t in zip(rewards, texts)]
        return [r if m else None for r, m in zip(rewards, mine)]


def build_reward_funcs(cfg: GRPOConfig) -> tuple[list[TaskReward], list[float]]:
    """Reward functions and TRL ``reward_weights`` from ``grpo.rewards_iqa`` / ``grpo.rewards_iaa``
    (reward name -> weight), with the Gaussian and Thurstone constants bound from params and the IAA length floor
    (``grpo.min_words_iaa``) on every IAA reward but format."""
    options = {"gaussian_score": cfg.gaussian.model_dump(), "thurstone_rank": cfg.thurstone.model_dump()}
    funcs, weights = [], []
    for task, table in (("iqa", cfg.rewards_iqa), ("iaa", cfg.rewards_iaa)):
        for n, (name, weight) in enumerate(table.items()):
            if name not in REWARDS:
                raise ValueError(f"grpo.rewards_{task}: unknown reward {name!r}; choose from {', '.join(REWARDS)}")
            func = partial(REWARDS[name], **options.get(name, {}))
            floor = cfg.min_words_iaa if task == "iaa" and name != "format" else None
            funcs.append(TaskReward(task, name, func, log_stats=n == 0, min_words=floor))
            weights.append(weight)
    return funcs, weights


# -------------------------------------------------------------------------------------- benchmark
def _best_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_bench(images: int = 64, generations: int = 8, repeats: int = 5, seed: int = 0) -> float:
    """Time the vectorised ranking against the pure-Python pairwise loop on ``images`` x ``generations``
    completions (5% unparseable, 2% off the scale); print both, the max abs difference and the ratio (last line).
    Returns the ratio."""
    rng = np.random.default_rng(seed)
    gt_image = rng.uniform(0, 1, images)
    image = np.repeat(np.arange(images), generations)
    gt = gt_image[image]
    pred = np.clip(gt + rng.normal(0, 0.1, len(gt)), 0, 1)
    pred[rng.random(len(pred)) < 0.05] = np.nan
    pred[rng.random(len(pred)) < 0.02] = 3.0  # an answer of 300: invalid, like an unparseable one

    fast = thurstone_scores(pred, gt, image)
    slow = np.array(thurstone_scores_python(pred.tolist(), gt.tolist(), image.tolist()))
    diff = float(np.nanmax(np.abs(fast - slow)))
    t_fast = _best_time(lambda: thurstone_scores(pred, gt, image), repeats)
    t_slow = _best_time(lambda: thurstone_scores_python(pred.tolist(), gt.tolist(), image.tolist()), repeats)
    ratio = t_slow / t_fast
    print(f"thurstone ranking, {images} images x {generations} completions ({len(pred)} rows, best of {repeats})")
    print(f"pure-Python pairwise: {t_slow * 1e3:9.3f} ms")
    print(f"vectorised (numpy):   {t_fast * 1e3:9.3f} ms")
    print(f"max abs difference:   {diff:.3e}")
    print(f"ratio: {ratio:.1f}x")
    return ratio
