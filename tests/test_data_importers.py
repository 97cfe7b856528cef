"""Importers on small fixtures built in tmp_path: KonIQ (DeQA meta), ArtiMuse-10K, generic, benchmark import."""

import csv
import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

from tatar.config import TrainSetConfig
from tatar.data import importers
from tatar.data.checks import MALFORMED_ROW, MISSING_IMAGE, check_rows
from tatar.data.importers import attribute_key, import_benchmark_cli, import_train_set
from tatar.data.registry import reference_manifest
from tatar.records import ManifestRecord, read_records


def write_png(path, value=0):
    """A tiny image whose bytes differ by ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value % 256, np.uint8)).save(path)


def records_of(cfg: TrainSetConfig):
    imported = import_train_set(cfg)
    checked = check_rows(imported.rows)
    return {r.image: r for r in checked.records}, imported.quarantined + checked.quarantined


# ------------------------------------------------------------------------------------------- KonIQ
@pytest.fixture
def koniq(tmp_path):
    images = tmp_path / "koniq"
    meta = []
    for i, (mos, norm) in enumerate([(4.2, 1.0), (50.0, 3.0), (88.24, 5.0)]):
        write_png(images / f"1024x768/{i}.jpg", i)
        meta.append({"id": f"{i}.jpg->{mos}", "image": f"1024x768/{i}.jpg", "gt_score": mos, "gt_score_norm": norm,
                     "std": 0.5, "level_probs": [0.2] * 5})
    path = tmp_path / "train_koniq.json"
    path.write_text(json.dumps(meta))
    return path, images


def test_koniq_reads_gt_score_norm_on_deqa_1_to_5(koniq):
    path, images = koniq
    recs, bad = records_of(TrainSetConfig(name="koniq", format="koniq", path=str(path), images=str(images)))
    assert not bad
    assert [recs[f"1024x768/{i}.jpg"].score_100 for i in range(3)] == [0.0, 50.0, 100.0]
    rec = recs["1024x768/1.jpg"]
    assert (rec.id, rec.task, rec.split, rec.dataset, rec.root) == ("koniq/1024x768/1.jpg", "iqa", "train", "koniq",
                                                                     str(images))


def test_koniq_raw_mos_with_its_declared_scale_stays_put(koniq):
    path, images = koniq
    cfg = TrainSetConfig(name="koniq", format="koniq", path=str(path), images=str(images),
                         score_column="gt_score", scale=(0, 100))
    recs, _ = records_of(cfg)
    assert recs["1024x768/0.jpg"].score_100 == pytest.approx(4.2)


def test_koniq_other_column_without_scale_is_refused(koniq):
    path, images = koniq
    cfg = TrainSetConfig(name="koniq", format="koniq", path=str(path), images=str(images), score_column="gt_score")
    with pytest.raises(ValueError, match=r"data.train\[koniq\].*'gt_score' needs a declared scale"):
        import_train_set(cfg)


# ---------------------------------------------------------------------------------------- ArtiMuse
# The release's aspect names and the paper's merge-script keys (tatar/data/formats/artimuse.py).
ARTIMUSE_NAMES = {
    "Composition & Structure": "composition", "Visual Elements": "visual_elements",
    "Technical Execution": "technical_execution", "Originality & Creativity": "originality",
    "Theme & Communication": "theme", "Emotion & Viewer Response": "emotion",
    "Overall Gestalt": "gestalt", "Overall Evaluation": "overall",
}
MERGE_KEYS = {"composition_structure": "composition", "emotion_viewer_response": "emotion",
              "overall_gestalt": "gestalt", "overall_evaluation": "overall"}


@pytest.mark.parametrize(("key", "attribute"), [*ARTIMUSE_NAMES.items(), *MERGE_KEYS.items(),
                                                ("visual_elements", "visual_elements"), ("Overall Impression", None),
                                                ("Composition & Design", None), ("score", None)])
def test_attribute_key_matches_names_exactly(key, attribute):
    assert attribute_key(key) == attribute


# ----------------------------------------------------------------------------------------- generic
def test_generic_csv_with_scale_columns(tmp_path):
    images = tmp_path / "imgs"
    write_png(images / "a.png", 1)
    write_png(images / "b.png", 2)
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "mos", "lo", "hi"])
        w.writerow(["a.png", "3", "1", "5"])
        w.writerow(["b.png", "60", "0", "100"])
        w.writerow(["", "60", "0", "100"])  # no image
    cfg = TrainSetConfig(name="mine", format="generic", path=str(path), images=str(images), task="iqa",
                         image_column="file", score_column="mos", scale_columns=("lo", "hi"))
    recs, bad = records_of(cfg)
    assert recs["a.png"].score_100 == pytest.approx(50.0) and recs["b.png"].score_100 == pytest.approx(60.0)
    assert [(q.reason, "labels.csv:4" in q.detail) for q in bad] == [(MALFORMED_ROW, True)]


def test_generic_jsonl_lower_is_better_and_broken_line(tmp_path):
    images = tmp_path / "imgs"
    write_png(images / "a.png", 1)
    path = tmp_path / "dmos.jsonl"
    path.write_text('{"image": "a.png", "score": 1.5}\n{"image": "b.png", "score": \n')
    cfg = TrainSetConfig(name="dmos", format="generic", path=str(path), images=str(images), task="iqa",
                         scale=(1, 5), lower_is_better=True)
    recs, bad = records_of(cfg)
    assert recs["a.png"].score_100 == pytest.approx(87.5)  # flipped: 1 is best
    assert bad[0].reason == MALFORMED_ROW and "not valid JSON" in bad[0].detail


def test_generic_json_object_holding_a_list(tmp_path):
    images = tmp_path / "imgs"
    write_png(images / "a.png", 1)
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 2, "items": [{"image": "a.png", "score": 8}]}))
    cfg = TrainSetConfig(name="w", format="generic", path=str(path), images=str(images), task="iaa", scale=(1, 10))
    recs, _ = records_of(cfg)
    assert recs["a.png"].score_100 == pytest.approx(100 * 7 / 9)


def test_generic_needs_task_and_scale(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="needs task"):
        import_train_set(TrainSetConfig(name="x", format="generic", path=str(path), images=".", scale=(0, 1)))
    with pytest.raises(ValueError, match="declare the label scale"):
        import_train_set(TrainSetConfig(name="x", format="generic", path=str(path), images=".", task="iqa"))
    with pytest.raises(ValueError, match="nope.json: training set file not found"):
        import_train_set(TrainSetConfig(name="x", format="koniq", path=str(tmp_path / "nope.json"), images="."))


# -------------------------------------------------------------------------------------- benchmarks
@pytest.fixture
def artimuse_folder(tmp_path):
    """A folder holding every image of the ArtiMuse-10K evaluation manifest (identical tiny PNG bytes)."""
    folder = tmp_path / "ArtiMuse-10K"
    folder.mkdir()
    write_png(tmp_path / "one.png")
    data = (tmp_path / "one.png").read_bytes()
    for item in reference_manifest("ArtiMuse-10K"):
        (folder / item["image"]).write_bytes(data)
    return folder


@pytest.fixture
def events(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "tatar.events",
                        types.SimpleNamespace(emit_data_changed=lambda name, path: calls.append((name, path))))
    return calls


def test_import_benchmark_writes_manifest(artimuse_folder, tmp_path, events):
    out = tmp_path / "out.jsonl"
    assert import_benchmark_cli("artimuse", artimuse_folder, out=out) == 0
    recs = read_records(out, ManifestRecord)
    items = reference_manifest("ArtiMuse-10K")
    assert len(recs) == len(items)
    assert recs[0].score_100 == pytest.approx(items[0]["gt_score"] * 10)
    assert recs[0].id == f"ArtiMuse-10K/{items[0]['image']}" and recs[0].split == "test"
    assert recs[0].root == str(artimuse_folder.resolve())
    assert events == [("ArtiMuse-10K", out)]


def test_import_benchmark_lists_missing_images(artimuse_folder, tmp_path, capsys, events):
    items = reference_manifest("ArtiMuse-10K")
    for item in items[:7]:
        (artimuse_folder / item["image"]).unlink()
    out = tmp_path / "out.jsonl"
    assert import_benchmark_cli("ArtiMuse-10K", artimuse_folder, out=out) == 1
    err = capsys.readouterr().err
    assert f"7 of {len(items)} images: {MISSING_IMAGE}" in err and items[0]["image"] in err
    assert "--allow-missing" in err and not out.exists() and not events

    assert import_benchmark_cli("ArtiMuse-10K", artimuse_folder, out=out, allow_missing=True) == 0
    assert len(read_records(out, ManifestRecord)) == len(items) - 7


def test_import_benchmark_bad_arguments(tmp_path, capsys):
    assert import_benchmark_cli("LIVE", tmp_path) == 2
    assert import_benchmark_cli("AVA", tmp_path / "absent") == 2
    assert "not a folder" in capsys.readouterr().err


def test_portable_root_keeps_project_paths_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    assert importers.portable_root(tmp_path / "images") == "images"
    assert importers.portable_root(tmp_path.parent).startswith("/")
