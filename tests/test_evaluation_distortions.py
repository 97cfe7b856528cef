"""Per-distortion SRCC: reading the distortion from published file names, the two figures, and the report."""

import numpy as np
import pytest

from tatar.config import SyntheticConfig
from tatar.data.synthetic_iqa import build_iqa
from tatar.evaluation.distortions import Distorted, by_distortion, parse_names
from tatar.evaluation.metrics import EvalMetrics, Prediction, summarise
from tatar.evaluation.report import markdown_report


def prediction(image, gt, pred, benchmark="kadid"):
    return Prediction(id=f"{benchmark}/{image}", benchmark=benchmark, task="iqa", image=f"/data/{image}",
                      score_100=gt, pred=pred, think_words=0, raw="")


@pytest.mark.parametrize("names, expected", [
    (["I01_01_01.png", "I81_25_05.png"],  # KADID-10k's first and last type codes (its paper's order)
     [Distorted("01", "gaussian_blur", 1), Distorted("81", "contrast_change", 5)]),
    (["I03_17_02.png"], [Distorted("03", "darken", 2)]),
    (["I01_26_01.png"], None),  # no type 26 in KADID-10k
    (["I01_01_01.png", "10004473376.jpg"], None),  # one name that does not parse: no table for the benchmark
    (["A0006_00_00.bmp"], None),  # PIPAL: categories, not distortions with levels (not read)
    (["10004473376.jpg"], None),  # KonIQ-10k
    (["photo_c1_sepia_2.png"], None),  # the synthetic layout, but no distortion the builder knows
    ([], None),
])
def test_names_parse_as_published(names, expected):
    assert parse_names(names) == expected


def test_synthetic_names_parse_as_the_builder_writes_them(tmp_path):
    cfg = SyntheticConfig(image_size=32, crops_per_source=2, iqa_per_source=0, iqa_levels=2,
                          iqa_distortions=["gaussian_blur", "darken"])
    rows = build_iqa(cfg, 0, ["motorcycle_left"], "test", tmp_path)
    parsed = parse_names([r.image for r in rows])
    assert sorted(parsed) == sorted(Distorted(f"motorcycle_left_c{c}", d, level)
                                    for c in (0, 1) for d in ("gaussian_blur", "darken") for level in (1, 2))


def test_within_reference_ranking_apart_from_calibration_across_references():
    # Blur: each scene ranked perfectly, but scene 02 is scored 40 points too low: pooled SRCC suffers, within
    # does not. Darken: scene 01 constant (undefined, left out), scene 02 ranked backwards. One parse failure.
    def scene(ref, kind, pairs):
        return [prediction(f"I{ref}_{kind}_0{k}.png", gt, pred) for k, (gt, pred) in enumerate(pairs, 1)]

    preds = scene("01", "01", [(90, 80), (70, 60), (50, 40)]) + scene("02", "01", [(95, 45), (80, 30), (60, 10)])
    preds += scene("01", "17", [(90, 50), (70, 50)]) + scene("02", "17", [(90, 10), (70, 20), (50, 30), (30, None)])
    preds += scene("03", "17", [(60, 40)])  # one image: no ranking within its reference
    rows = by_distortion(preds)
    assert list(rows) == ["gaussian_blur", "darken"]
    blur, darken = rows["gaussian_blur"], rows["darken"]
    assert blur.within_reference_srcc == pytest.approx(1.0) and (blur.references, blur.undefined) == (2, 0)
    assert blur.n == 6 and blur.srcc == pytest.approx(0.4857, abs=1e-3)
    assert darken.within_reference_srcc == pytest.approx(-1.0) and (darken.references, darken.undefined) == (2, 1)
    assert darken.n == 6  # the parse failure is left out


def test_only_benchmarks_with_distortion_names_get_a_table_in_metrics_and_report():
    rng = np.random.default_rng(0)
    kadid = [prediction(f"I{r:02d}_{t:02d}_{lv:02d}.png", g, g + rng.normal(0, 5))
             for r in (1, 2) for t in (1, 10) for lv in range(1, 6) for g in [100 - 15 * lv]]
    koniq = [prediction(f"{i}.jpg", g, g, "koniq") for i, g in enumerate([10.0, 50.0, 90.0])]
    preds = {"kadid": kadid, "koniq": koniq}
    metrics = EvalMetrics.collect("ckpt", {k: summarise(v, 1.0) for k, v in preds.items()}, {},
                                  distortions={k: by_distortion(v) for k, v in preds.items()})
    assert set(metrics.distortions) == {"kadid"} and set(metrics.distortions["kadid"]) == {"gaussian_blur", "jpeg"}
    assert EvalMetrics.model_validate(metrics.model_dump(mode="json")) == metrics  # metrics.json round trip
    report = markdown_report(metrics)
    section = report.split("## By distortion")[1].split("## Next to published")[0]
    assert "`kadid`" in section and "| gaussian_blur | 10 |" in section and "koniq" not in section
    assert "## By distortion" not in markdown_report(metrics.model_copy(update={"distortions": {}}))
