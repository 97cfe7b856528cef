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
