"""CPU thread default and its override (the speed figures come from `tatar bench threads`, not from a test)."""

import pytest

from tatar.threads import ENV, cpu_threads


def test_one_thread_by_default_and_the_environment_overrides(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert cpu_threads() == 1
    monkeypatch.setenv(ENV, "0")
    assert cpu_threads() == 0
    monkeypatch.setenv(ENV, "2")
    assert cpu_threads() == 2


@pytest.mark.parametrize("value", ["two", "-1"])
def test_bad_values_are_one_line_errors(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(SystemExit, match=ENV):
        cpu_threads()


def test_bench_batches_put_the_loss_on_each_target_only():
    """The batch `tatar bench threads` / `lm-head` time: left-padded rows, labels on each row's own target."""
    from tatar.config import ModelConfig
    from tatar.modeling import build_tokenizer
    from tatar.training.threads_bench import NARRATIVE, tiny_sft_batch

    model, batch = tiny_sft_batch(examples=3, iaa=1)
    tokenizer = build_tokenizer(ModelConfig().tiny.vocab_size, ModelConfig().tiny.score_tokens)
    labelled = [tokenizer.decode(ids[labels != -100]) for ids, labels in zip(batch["input_ids"], batch["labels"])]
    assert labelled == ["<answer>55.26</answer><|im_end|>\n"] * 2 + [NARRATIVE + "<|im_end|>\n"]
    assert (batch["attention_mask"][:2, 0] == 0).all()  # the short rows are padded on the left
    assert model.training


def test_lm_head_bench_times_three_loss_paths():
    from tatar.training.lm_head_bench import run_bench

    figures = run_bench(steps=1, examples=2, iaa=1)
    assert set(figures) == {"tiled", "own", "plain"} and all(v > 0 for v in figures.values())
