"""Typed params: the shipped files load; unknown keys and wrong types are errors naming the key."""

from pathlib import Path

import pytest

from tatar.config import ConfigError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_shipped_params_files_load(path):
    params = load_params(path)
    assert params.grpo.beta == 0.001  # the paper's value in every shipped file


def test_unknown_key_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError) as err:
        parse_params({"grpo": {"betta": 0.1, "beta": "high"}, "sft": {"think_dropout": {"iqa": 1.5}}})
    msg = str(err.value)
    assert "grpo.betta" in msg and "Extra inputs" in msg
    assert "grpo.beta" in msg and "valid number" in msg
    assert "sft.think_dropout.iqa" in msg


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="trainer"):
        parse_params({"trainer": {}})


def test_validate_section_keeps_its_name():
    params = parse_params({"validate": {"min_attributes": 3}})
    assert params.validate.min_attributes == 3


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_lineage_compares_params_as_values_not_text():
    from tatar.lineage import _same_value

    assert _same_value(1e-06, "1e-06") and _same_value([15, 50], (15, 50))
    assert not _same_value(0.001, "0.01") and not _same_value(True, 1.0) and not _same_value("a", "b")


def test_word_ranges_that_cannot_fit_the_token_budgets_name_both_keys():
    with pytest.raises(ConfigError) as err:
        parse_params({"grpo": {"max_completion_length": 64}, "validate": {"think_words_iaa": [80, 200]}})
    msg = str(err.value)
    assert "validate.think_words_iaa" in msg and "grpo.max_completion_length = 64" in msg
    assert "eval.max_new_tokens" not in msg and "think_words_iqa" not in msg  # those fit (256 tokens, 50 words)
    with pytest.raises(ConfigError, match=r"validate.think_words_iqa allows 50 words.*eval.max_new_tokens = 40"):
        parse_params({"eval": {"max_new_tokens": 40}, "validate": {"think_words_iaa": [10, 30]}})
    with pytest.raises(ConfigError, match=r"grpo.min_words_iaa requires 300 words.*grpo.max_completion_length = 256"):
        parse_params({"grpo": {"min_words_iaa": 300}})
    assert parse_params({"grpo": {"max_completion_length": 251}}).grpo.max_completion_length == 251  # 250 words fit


def test_paper_config_sets_the_paper_code_grpo_knobs():
    grpo = load_params(ROOT / "configs/paper-qwen2.5-vl-7b.yaml").grpo
    assert (grpo.loss_type, grpo.scale_rewards, grpo.gradient_accumulation_steps) == ("grpo", "group", 2)
    assert grpo.temperature == 1.0 and grpo.min_words_iaa == 125
