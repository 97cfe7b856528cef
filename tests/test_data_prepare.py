"""The prepare stage: manifests, every raw-data check on planted bad records, the quarantine policy."""

import csv
import json
import re
import shutil

import pytest
from pydantic import ValidationError
from test_data_importers import write_png

from tatar.config import DataConfig, Params, QuarantineConfig, TrainSetConfig
from tatar.data import checks
from tatar.data.prepare import DataPolicyError, prepare, run
from tatar.hashing import sha256_file
from tatar.records import ManifestRecord, read_jsonl, read_records


def test_synthetic_data_fixture(synthetic_data):
    train = read_records(synthetic_data.train, ManifestRecord)
    assert {r.task for r in train} == {"iqa", "iaa"} and {r.split for r in train} == {"train"}
    assert set(synthetic_data.test) == {"synthetic_iqa", "synthetic_iaa"}
    for name, path in synthetic_data.test.items():
        test = read_records(path, ManifestRecord)
        assert test and {(r.dataset, r.split) for r in test} == {(name, "test")}
        assert not {r.sha256 for r in test} & {r.sha256 for r in train}
    assert all(r.path.is_absolute() and sha256_file(r.path) == r.sha256 for r in train)
    assert all(0 <= r.score_100 <= 100 for r in train)
    assert synthetic_data.quarantine.read_text() == ""
    assert "synthetic_iaa | iaa | train | 12 |" in synthetic_data.report.read_text()


def test_stage_run_writes_portable_relative_roots(tiny_data_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(Params(data=tiny_data_config))
    rec = read_records("data/manifests/train.jsonl", ManifestRecord)[0]
    assert rec.root in ("data/synthetic/iqa", "data/synthetic/iaa") and rec.path.exists()
    report = json.loads((tmp_path / "data/manifests/report.json").read_text())
    assert report["kept"] == 36 and report["quarantined"] == 0


# ------------------------------------------------------------------------------------ planted records
PLANTED = [  # image, label, expected reason (None: kept)
    ("good.png", "3", None),
    ("missing.png", "3", checks.MISSING_IMAGE),
    ("corrupt.png", "3", checks.UNDECODABLE_IMAGE),
    ("abc.png", "abc", checks.NON_NUMERIC_LABEL),
    ("nan.png", "nan", checks.NAN_LABEL),
    ("out.png", "7", checks.OUT_OF_SCALE_LABEL),
    ("dup.png", "2", checks.DUPLICATE_ID),  # same id, different labels: both copies quarantined
    ("dup.png", "4", checks.DUPLICATE_ID),
    ("same.png", "3", None),  # exact repeat: first copy kept...
    ("same.png", "3", checks.DUPLICATE_ID),  # ...the second quarantined
    ("leak.png", "3", checks.TRAIN_TEST_OVERLAP),  # same bytes as a KADID test image
    ("", "3", checks.MALFORMED_ROW),  # no image field
]


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A project with one generic training set holding every kind of bad record, and an imported KADID
    manifest whose only image has the same bytes as the training image leak.png."""
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "planted"
    for i, name in enumerate(["good.png", "abc.png", "nan.png", "out.png", "dup.png", "same.png", "leak.png"]):
        write_png(images / name, 10 * i)
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    kadid = tmp_path / "kadid"
    kadid.mkdir()
    shutil.copy(images / "leak.png", kadid / "I01_01_01.png")
    bench = ManifestRecord(id="KADID/I01_01_01.png", image="I01_01_01.png", root="kadid", task="iqa",
                           dataset="KADID", split="test", score=4.5, score_100=87.5,
                           sha256=sha256_file(kadid / "I01_01_01.png"))
    (tmp_path / "data/benchmarks").mkdir(parents=True)
    (tmp_path / "data/benchmarks/KADID.jsonl").write_text(bench.model_dump_json() + "\n")
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "score"])
        writer.writerows([(image, label) for image, label, _ in PLANTED])
    train = TrainSetConfig(name="planted", format="generic", path="labels.csv", images="planted", task="iqa",
                           scale=(0, 5))
    return DataConfig(synthetic={"enabled": False}, train=[train], benchmarks=["kadid"],
                      quarantine=QuarantineConfig(max_fraction=1.0, overlap="quarantine"))


def test_every_planted_record_is_quarantined_with_its_reason(planted, tmp_path):
    manifests = prepare(planted, tmp_path)
    quarantined = sorted((q["id"], q["reason"]) for q in read_jsonl(manifests.quarantine))
    expected = sorted((f"planted/{image or '?'}", reason) for image, _, reason in PLANTED if reason)
    assert quarantined == expected
    assert [(r.image, r.score_100) for r in read_records(manifests.train, ManifestRecord)] == [
        ("good.png", 60.0), ("same.png", 60.0)]
    assert [r.id for r in read_records(manifests.test["KADID"], ManifestRecord)] == ["KADID/I01_01_01.png"]

    details = {q["id"]: q["detail"] for q in read_jsonl(manifests.quarantine)}
    assert "outside the declared scale [0, 5]" in details["planted/out.png"]
    assert "labels.csv:7" in details["planted/out.png"]  # the source row, for fixing it
    assert "KADID/I01_01_01.png" in details["planted/leak.png"]
    report = json.loads((tmp_path / "data/manifests/report.json").read_text())
    assert report["quarantine_by_reason"][checks.DUPLICATE_ID] == 3 and report["quarantined"] == 10
    markdown = manifests.report.read_text()
    assert all(f"| {image} " in markdown.replace("planted/", "| ") for image, _, r in PLANTED if r and image)


def test_policy_max_fraction_fails_naming_records(planted, tmp_path):
    planted.quarantine = QuarantineConfig(max_fraction=0.01, overlap="quarantine")
    with pytest.raises(DataPolicyError) as err:
        prepare(planted, tmp_path)
    message = str(err.value)
    assert "10 of 13 records quarantined" in message  # 12 planted + 1 KADID
    assert "data.quarantine.max_fraction" in message
    assert "planted/corrupt.png [planted/train] undecodable_image" in message
    assert (tmp_path / "data/manifests/quarantine.jsonl").exists()  # written before failing, to be read


def test_policy_overlap_fails_even_under_the_fraction(planted, tmp_path):
    planted.quarantine = QuarantineConfig(max_fraction=1.0, overlap="fail")
    with pytest.raises(DataPolicyError, match=r"1 training image\(s\) also in a test set[\s\S]*planted/leak.png"):
        prepare(planted, tmp_path)


def test_replaced_fail_on_overlap_key_names_its_successor():
    with pytest.raises(ValidationError, match=re.escape("overlap: fail | exclude | quarantine")):
        QuarantineConfig(fail_on_overlap=False)


def test_benchmark_must_be_imported_first(tmp_path, monkeypatch, tiny_data_config):
    monkeypatch.chdir(tmp_path)
    tiny_data_config.benchmarks = ["AVA"]
    with pytest.raises(FileNotFoundError, match="tatar data import AVA --images DIR"):
        prepare(tiny_data_config, tmp_path)
    tiny_data_config.benchmarks = ["LIVE"]
    with pytest.raises(KeyError, match="unknown benchmark 'LIVE'"):
        prepare(tiny_data_config, tmp_path)


def test_no_training_data_is_an_error(tmp_path):
    with pytest.raises(DataPolicyError, match="no training records"):
        prepare(DataConfig(synthetic={"enabled": False}), tmp_path)
