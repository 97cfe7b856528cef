"""The benchmark registry and the declared-scale mapping to 0-100."""

import math

import pytest
from typer.testing import CliRunner

from tatar.cli import app
from tatar.data.registry import BENCHMARKS, Scale, get_benchmark, reference_manifest


def test_koniq_mos_of_4_2_stays_4_2():
    # The reference code guessed a 1-5 scale from the value and mapped this to 80.
    assert get_benchmark("KonIQ-10K").scale.to_100(4.2) == pytest.approx(4.2)


def test_lower_is_better_dmos_is_flipped():
    dmos = Scale(1, 5, lower_is_better=True)  # a KADID-style DMOS where 1 is best
    assert dmos.to_100(1.0) == pytest.approx(100.0)
    assert dmos.to_100(5.0) == pytest.approx(0.0)
    assert dmos.to_100(2.0) == pytest.approx(75.0)


@pytest.mark.parametrize(("name", "label", "expected"), [
    ("KADID", 3.0, 50.0),  # stored higher-is-better here: not flipped
    ("AVA", 5.5, 50.0),
    ("FLICKR-AES", 0.25, 25.0),
    ("ArtiMuse-10K", 7.5, 75.0),
    ("PIPAL", 5.0, 100.0),
])
def test_declared_scales(name, label, expected):
    assert get_benchmark(name).scale.to_100(label) == pytest.approx(expected)


def test_scale_rejects_bad_values():
    with pytest.raises(ValueError, match="hi must be greater"):
        Scale(5, 1)
    with pytest.raises(ValueError, match="not a finite number"):
        Scale(0, 1).to_100(math.nan)


def test_names_and_aliases():
    assert [b.task for b in BENCHMARKS.values()] == ["iqa"] * 4 + ["iaa"] * 4
    assert get_benchmark("koniq").name == "KonIQ-10K"
    assert get_benchmark("artimuse_10k").name == "ArtiMuse-10K"
    with pytest.raises(KeyError, match="unknown benchmark 'LIVE'.*KonIQ-10K"):
        get_benchmark("LIVE")


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_shipped_manifests_fit_their_declared_scale(name):
    items = reference_manifest(name)
    scale = get_benchmark(name).scale
    assert items and all(scale.contains(float(item["gt_score"])) for item in items)
    assert len({item["image"] for item in items}) == len(items)


def test_data_list_prints_every_benchmark():
    result = CliRunner().invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in BENCHMARKS:
        assert name in result.output
    assert "19930" in result.output  # AVA's manifest size
