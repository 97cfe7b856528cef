"""The held-out validation split prepare draws from the training records (tatar.data.split)."""

import pytest

from tatar.data.split import SplitError, validation_split
from tatar.records import ManifestRecord


def rec(i: int, task: str, sha: str | None = None) -> ManifestRecord:
    return ManifestRecord(id=f"d/{task}{i}", image=f"{task}{i}.png", root="r", task=task, dataset="d", split="train",
                          score=float(i), score_100=float(i), sha256=sha or f"{task}-{i:03d}")


def records():
    # IQA image 0 appears twice (same bytes under two ids): both copies must land on the same side.
    return [rec(i, "iqa") for i in range(20)] + [rec(99, "iqa", sha="iqa-000")] + [rec(i, "iaa") for i in range(12)]


def test_split_is_sized_per_task_disjoint_by_image_hash_and_seeded():
    train, val = validation_split(records(), per_task=4, seed=0)
    assert {r.sha256 for r in train}.isdisjoint({r.sha256 for r in val})
    assert len(train) + len(val) == len(records())
    for task in ("iqa", "iaa"):
        assert 4 <= sum(r.task == task for r in val) <= 5  # a duplicated image may add one record
    again = validation_split(list(reversed(records())), per_task=4, seed=0)[1]
    assert {r.id for r in again} == {r.id for r in val}  # order of the input does not matter
    assert {r.id for r in validation_split(records(), per_task=4, seed=1)[1]} != {r.id for r in val}


def test_zero_keeps_everything_for_training_and_too_many_is_a_clear_error():
    assert validation_split(records(), per_task=0, seed=0) == (records(), [])
    with pytest.raises(SplitError, match="only 12 distinct IAA images"):
        validation_split(records(), per_task=12, seed=0)


def test_prepare_writes_a_validation_manifest_never_from_the_test_sets(tiny_data_config, tmp_path):
    from tatar.data.prepare import prepare
    from tatar.records import read_records

    tiny_data_config.validation.per_task = 2
    manifests = prepare(tiny_data_config, tmp_path)
    val = read_records(tmp_path / "data/manifests/val.jsonl", ManifestRecord)
    train = read_records(manifests.train, ManifestRecord)
    test = [r for p in manifests.test.values() for r in read_records(p, ManifestRecord)]
    assert sorted(r.task for r in val) == ["iaa", "iaa", "iqa", "iqa"]
    assert {r.sha256 for r in val}.isdisjoint({r.sha256 for r in train} | {r.sha256 for r in test})
    assert all(r.split == "train" for r in val)
