"""The embedded synthetic dataset: deterministic, disjoint train/test photographs, sensible labels and texts."""

import numpy as np
import pytest

from tatar.config import SyntheticConfig
from tatar.data import dead_leaves
from tatar.data.sources import PHOTOS, SUBJECTS, load_photo, resize, split_sources, to_uint8
from tatar.data.synthetic import build_synthetic
from tatar.data.synthetic_iaa import Plan, frame, measure, sub_scores, subject_point
from tatar.data.synthetic_iqa import DISTORTIONS, build_iqa, full_reference_mos
from tatar.hashing import file_hashes
from tatar.records import ATTRIBUTES


def build(cfg, seed, out):
    rows = build_synthetic(cfg.synthetic, seed, out)
    return rows, file_hashes(out)


def test_same_seed_same_bytes_other_seed_differs(tiny_data_config, tmp_path):
    rows_a, hashes_a = build(tiny_data_config, 0, tmp_path / "a")
    rows_b, hashes_b = build(tiny_data_config, 0, tmp_path / "b")
    _, hashes_c = build(tiny_data_config, 1, tmp_path / "c")
    assert hashes_a == hashes_b and len(hashes_a) == 36  # 3 photographs x 6 images x 2 tasks
    assert [(r.id, r.score, r.attributes) for r in rows_a] == [(r.id, r.score, r.attributes) for r in rows_b]
    assert hashes_a != hashes_c


def test_rebuild_replaces_stale_images(tiny_data_config, tmp_path):
    stale = tmp_path / "iqa" / "train" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    build_synthetic(tiny_data_config.synthetic, 0, tmp_path)
    assert not stale.exists()


def test_train_and_test_come_from_disjoint_photographs(tiny_data_config, tmp_path):
    rows = build_synthetic(tiny_data_config.synthetic, 0, tmp_path)
    photo = lambda r: r.image.split("/")[1].split("_c")[0]  # noqa: E731
    assert {photo(r) for r in rows if r.split == "train"} == {"astronaut", "retina"}
    assert {photo(r) for r in rows if r.split == "test"} == {"chelsea"}
    assert {(r.task, r.split) for r in rows} == {("iqa", "train"), ("iqa", "test"), ("iaa", "train"), ("iaa", "test")}


def test_split_sources_keeps_scenes_together():
    with pytest.raises(ValueError, match="motorcycle"):
        split_sources(["astronaut", "motorcycle_left", "motorcycle_right"], ["motorcycle_left"])
    with pytest.raises(ValueError, match="unknown photographs.*'lena'"):
        split_sources(["lena", "astronaut"], ["astronaut"])
    with pytest.raises(ValueError, match="not in data.synthetic.sources"):
        split_sources(["astronaut", "coffee"], ["rocket"])


def test_every_photograph_loads_offline_as_rgb_with_a_subject():
    for name in PHOTOS:  # all ship inside installed packages (scikit-image, matplotlib): no download
        photo = load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3 and min(photo.shape[:2]) >= 256
        assert not photo.flags.writeable and SUBJECTS[name]


def test_iqa_grid_and_monotone_full_reference_mos(tmp_path):
    cfg = SyntheticConfig(image_size=48, iqa_distortions=list(DISTORTIONS), iqa_levels=5, iqa_per_source=0,
                          crops_per_source=1)
    rows = build_iqa(cfg, 0, ["coffee"], "train", tmp_path)
    assert len(rows) == len(DISTORTIONS) * 5  # the full KADID-style grid
    by_distortion: dict[str, list[float]] = {}
    for r in rows:
        by_distortion.setdefault(r.image.split("_c0_")[1].rsplit("_", 1)[0], []).append(r.score)
    for name, scores in by_distortion.items():
        assert scores == sorted(scores, reverse=True), f"{name}: MOS must fall with the level: {scores}"
        assert 0 <= scores[-1] < scores[0] <= 100


def test_full_reference_mos_of_identical_images_is_100():
    ref = to_uint8(resize(load_photo("astronaut"), (32, 32)))
    assert full_reference_mos(ref, ref) == pytest.approx(100.0)


def test_unknown_distortion_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown \\['sepia'\\]"):
        build_iqa(SyntheticConfig(iqa_distortions=["sepia"]), 0, ["coffee"], "train", tmp_path)


def test_iaa_records_have_all_eight_attribute_texts(tiny_data_config, tmp_path):
    rows = [r for r in build_synthetic(tiny_data_config.synthetic, 0, tmp_path) if r.task == "iaa"]
    assert rows and all(list(r.attributes) == list(ATTRIBUTES) for r in rows)
    assert all(len(text.split()) >= 8 for r in rows for text in r.attributes.values())
    assert len({r.score for r in rows}) > len(rows) // 2  # scores vary with the manipulations
    assert all(str(r.score) not in " ".join(r.attributes.values()) for r in rows)


def test_iaa_sub_scores_respond_to_each_manipulation():
    scene = resize(load_photo("coffee"), (192, 128))
    clean_image = frame(scene, Plan("thirds", (1 / 3, 1 / 3), 0.8), 64)
    clean = measure(clean_image)
    from tatar.data.synthetic_iaa import style

    rng = np.random.default_rng(0)
    base = Plan("thirds", (1 / 3, 1 / 3), 0.8)
    good = sub_scores(clean, clean, 0.0)
    for field, value, score in [("ev", 1.5, "exposure"), ("saturation", 0.0, "colour"), ("cast", "green", "colour"),
                                ("clutter", 12, "clutter")]:
        plan = Plan(**{**base.__dict__, field: value})
        bad = sub_scores(measure(style(clean_image, plan, rng)), clean, 0.0)
        assert bad[score] < good[score] - 0.2, field
    assert sub_scores(clean, clean, 12.0)["tilt"] < 0.1


def test_subject_point_follows_the_detail():
    image = np.zeros((64, 64, 3))
    image[8:20, 40:56] = np.random.default_rng(0).random((12, 16, 3))  # texture in the upper right
    x, y = subject_point(image)
    assert x > 0.55 and y < 0.4


def test_dead_leaves_scenes_are_deterministic_varied_and_distinct():
    a, b, other = (dead_leaves.dead_leaves(i, size=128) for i in (0, 0, 1))
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 20  # many discs, not a flat frame
    assert (dead_leaves.index_of("dead_leaves_3"), dead_leaves.index_of("dead_leaves_x"),
            dead_leaves.index_of("astronaut")) == (3, None, None)


def test_dead_leaves_join_the_training_side_only(tmp_path):
    cfg = SyntheticConfig(image_size=48, sources=["astronaut", "chelsea"], test_sources=["chelsea"],
                          iqa_per_source=2, iaa_variants_per_source=1, crops_per_source=2, dead_leaves=2)
    rows = build_synthetic(cfg, 0, tmp_path)
    source = lambda r: r.image.split("/")[1].split("_c")[0]  # noqa: E731
    assert {source(r) for r in rows if r.split == "train"} == {"astronaut", "dead_leaves_0", "dead_leaves_1"}
    assert {source(r) for r in rows if r.split == "test"} == {"chelsea"}
    leaves = [r for r in rows if source(r).startswith("dead_leaves")]
    assert {r.task for r in leaves} == {"iqa", "iaa"} and len(leaves) == 2 * 2 * (2 + 1)
    assert all(dead_leaves.SUBJECT in r.attributes["theme"] for r in leaves if r.task == "iaa")
    assert all((tmp_path / r.task / r.image).is_file() for r in leaves)


def test_iqa_train_crops_add_training_iqa_scenes_only(tmp_path):
    cfg = SyntheticConfig(image_size=48, sources=["astronaut", "chelsea"], test_sources=["chelsea"],
                          iqa_per_source=2, iaa_variants_per_source=1, crops_per_source=2)
    base = {(r.task, r.split, r.image): r.score for r in build_synthetic(cfg, 0, tmp_path / "a")}
    more = {(r.task, r.split, r.image): r.score
            for r in build_synthetic(cfg.model_copy(update={"iqa_train_crops": 5}), 0, tmp_path / "b")}
    count = lambda rows, task, split: sum(k[:2] == (task, split) for k in rows)  # noqa: E731
    assert count(more, "iqa", "train") == 5 * 2 and count(base, "iqa", "train") == 2 * 2
    for task, split in (("iqa", "test"), ("iaa", "train"), ("iaa", "test")):
        assert count(more, task, split) == count(base, task, split)
    assert base.items() <= more.items()  # the first crops are the same images with the same MOS
