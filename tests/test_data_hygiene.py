"""prepare's train/test hygiene on real-format sources: overlap: exclude vs fail, split selection and label
transforms reported in report.md/json."""

import json

import pytest
from test_data_formats import write_csv, write_image

from tatar.config import DataConfig, QuarantineConfig, TrainSetConfig
from tatar.data.checks import TRAIN_TEST_OVERLAP
from tatar.data.prepare import DataPolicyError, prepare
from tatar.hashing import sha256_file
from tatar.records import ManifestRecord, read_jsonl, read_records


@pytest.fixture
def koniq_with_its_test_split(tmp_path, monkeypatch):
    """The official KonIQ CSV listing every image (test split included, all rows marked training here, as in a
    user's own export) and an imported KonIQ-10K benchmark manifest holding three of the images."""
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "koniq"
    rows = []
    for i in range(12):
        write_image(images / f"{i}.jpg", i)
        rows.append([f"{i}.jpg", 1 + 3 * i / 11, 5 + 80 * i / 11, "training"])
    write_csv(tmp_path / "koniq.csv", ["image_name", "MOS", "MOS_zscore", "set"], rows)
    bench = [ManifestRecord(id=f"KonIQ-10K/{i}.jpg", image=f"{i}.jpg", root=str(images), task="iqa",
                            dataset="KonIQ-10K", split="test", score=5 + 80 * i / 11, score_100=5 + 80 * i / 11,
                            sha256=sha256_file(images / f"{i}.jpg")) for i in (0, 5, 11)]
    (tmp_path / "data/benchmarks").mkdir(parents=True)
    (tmp_path / "data/benchmarks/KonIQ-10K.jsonl").write_text("".join(b.model_dump_json() + "\n" for b in bench))
    train = TrainSetConfig(name="koniq", format="koniq", path="koniq.csv", images=str(images))
    return DataConfig(synthetic={"enabled": False}, train=[train], benchmarks=["KonIQ-10K"])


def test_overlap_fail_is_the_default(koniq_with_its_test_split, tmp_path):
    with pytest.raises(DataPolicyError, match=r"3 training image\(s\) also in a test set.*overlap is fail"):
        prepare(koniq_with_its_test_split, tmp_path)


def test_overlap_exclude_drops_and_reports_per_dataset(koniq_with_its_test_split, tmp_path):
    koniq_with_its_test_split.quarantine = QuarantineConfig(overlap="exclude")  # max_fraction 0.01 still holds
    manifests = prepare(koniq_with_its_test_split, tmp_path)
    assert len(read_records(manifests.train, ManifestRecord)) == 9
    assert [q["reason"] for q in read_jsonl(manifests.quarantine)] == [TRAIN_TEST_OVERLAP] * 3  # nothing lost
    report = json.loads((tmp_path / "data/manifests/report.json").read_text())
    assert report["overlap_excluded"] == {"koniq": 3}
    assert report["notes"] == []  # MOS_zscore is the benchmark's transform, ranges agree
    assert "| koniq | 3 |" in manifests.report.read_text()


def test_a_label_transform_unlike_the_benchmarks_is_warned(koniq_with_its_test_split, tmp_path, capsys):
    cfg = koniq_with_its_test_split
    cfg.quarantine = QuarantineConfig(overlap="exclude")
    cfg.train[0].score_column = "MOS"  # on 1-5: another transform than the benchmark's MOS_zscore
    manifests = prepare(cfg, tmp_path)
    notes = json.loads((tmp_path / "data/manifests/report.json").read_text())["notes"]
    assert [n.split(":")[0] for n in notes] == ["data.train[koniq]"]
    assert "label 'MOS' on [1, 5]" in notes[0] and "KonIQ-10K test labels (MOS_zscore)" in notes[0]
    assert "## Warnings" in manifests.report.read_text()
    assert "prepare: warning:" in capsys.readouterr().out


def test_a_declared_scale_whose_range_leaves_the_benchmarks_is_warned(koniq_with_its_test_split, tmp_path):
    cfg = koniq_with_its_test_split
    cfg.quarantine = QuarantineConfig(overlap="exclude", max_fraction=1.0)
    cfg.train[0].score_column, cfg.train[0].scale = "MOS", (1, 3.8)  # declared: no transform warning...
    prepare(cfg, tmp_path)
    notes = json.loads((tmp_path / "data/manifests/report.json").read_text())["notes"]
    # ...but MOS 3.73 maps to 97.4, beyond the test range 5-85 by more than 10 points
    assert len(notes) == 1 and "range 9.7-97.4 disagrees with the KonIQ-10K test range 5.0-85.0" in notes[0]


def test_a_bad_source_file_stops_prepare_with_one_line_through_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tatar.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "AVA.csv").write_text("index,image\n")
    (tmp_path / "params.yaml").write_text(
        "data:\n  synthetic: {enabled: false}\n"
        "  train: [{name: ava, format: ava, path: AVA.csv, images: imgs}]\n")
    result = CliRunner().invoke(app, ["stage", "prepare"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["stage prepare failed: AVA.csv: the ava format reads AVA.txt (header-less, space separated); "
                     "found .csv"]


def test_data_add_refuses_what_it_cannot_import(tmp_path):
    from tatar.data.external import ExternalSourceError, add_external

    with pytest.raises(ExternalSourceError, match="not a file: .*nope.csv"):
        add_external([tmp_path / "nope.csv"], "x", tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/train.json").write_text("[]")
    (tmp_path / "b/train.json").write_text("[]")
    with pytest.raises(ExternalSourceError, match="two files named alike"):
        add_external([tmp_path / "a/train.json", tmp_path / "b/train.json"], "x", tmp_path)
