"""`tatar overfit` pieces that need no training: record choice, the deliberate label shuffle, the verdict line.
The command itself runs in tests/test_end_to_end.py on the embedded default (passes) and with shuffled labels
(fails with exit 1)."""

import pytest
from sft_fixtures import write_corpus

from tatar.training.overfit import OverfitError, OverfitResult, TaskResult, pick_records, shuffle_labels


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("overfit"), n_per_task=10)


def test_picks_n_per_task_spread_over_the_scores(corpus):
    picked = pick_records(corpus, ["iqa", "iaa"], n=4, seed=0)
    for task in ("iqa", "iaa"):
        scores = sorted(r.score_100 for r in picked if r.task == task)
        assert len(scores) == 4 and scores[-1] - scores[0] >= 50  # not four neighbours
    assert pick_records(corpus, ["iqa"], n=4, seed=0) == [r for r in picked if r.task == "iqa"]
    with pytest.raises(OverfitError, match="no iaa records"):
        pick_records([r for r in corpus if r.task == "iqa"], ["iqa", "iaa"], n=4, seed=0)


def test_shuffled_labels_move_targets_across_images_within_a_task(corpus):
    shuffled = shuffle_labels(corpus, seed=0)
    assert [r.id for r in shuffled] == [r.id for r in sorted(corpus, key=lambda r: r.task)]  # same images
    by_id = {r.id: r for r in corpus}
    moved = [r for r in shuffled if r.answer != by_id[r.id].answer]
    assert len(moved) >= len(corpus) // 2
    for r in shuffled:  # each target still comes from the same task, and the ground truth stays the image's own
        assert r.score_100 == by_id[r.id].score_100
        assert r.answer in {x.answer for x in corpus if x.task == r.task}


def test_verdict_line_and_failing_tasks():
    result = OverfitResult(steps=10, seconds=61.4, tasks={
        "iqa": TaskResult("iqa", 32, 1.0, 0.934, 0.9, 20), "iaa": TaskResult("iaa", 32, 0.5, None, None, 1)})
    assert result.summary_line() == "overfit: iqa SRCC 0.93, iaa SRCC n/a on 64 images in 61 s"
    assert result.failed(0.9) == ["iaa"]
    assert result.failed(0.95) == ["iqa", "iaa"]


@pytest.mark.parametrize(("steps", "expected"), [(None, 3000), (500, 500), (0, 0)])
def test_overfit_sets_its_own_vision_warmup(corpus, tmp_path, monkeypatch, steps, expected):
    """overfit.vision_warmup_steps replaces sft.vision_warmup.steps for the overfit only (None keeps sft's)."""
    import tatar.training.overfit as overfit
    from tatar.config import parse_params
    from tatar.training import sft

    seen = {}

    def fake_train(params, examples, trainer_dir, model_dir, on_trainer=None):
        seen["warmup"] = params.sft.vision_warmup
        return {"steps": 1}

    monkeypatch.setattr(sft, "train", fake_train)
    monkeypatch.setattr(sft, "build_examples", lambda records, cfg: [])
    monkeypatch.setattr(overfit, "score_images", lambda *a: {})
    params = parse_params({"sft": {"vision_warmup": {"steps": 3000, "learning_rate": 0.002}},
                           "overfit": {"vision_warmup_steps": steps}})
    overfit.run_overfit(params, [], work_dir=tmp_path / "work")
    assert seen["warmup"].steps == expected and seen["warmup"].learning_rate == 0.002
    assert params.sft.vision_warmup.steps == 3000  # the caller's params are not touched
