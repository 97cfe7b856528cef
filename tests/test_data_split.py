"""The held-out validation split prepare draws from the training records (tatar.data.split)."""

from tatar.data.split import validation_split
from tatar.records import ManifestRecord


def rec(i: int, task: str, sha: str | None = None) -> ManifestRecord:
    return ManifestRecord(id=f"d/{task}{i}", image=f"{task}{i}.png", root="r", task=task, dataset="d", split="train",
                          score=float(i), score_100=float(i), sha256=sha or f"{task}-{i:03d}")


def records(n: int = 200):
    # Every IQA image appears twice (same bytes under two ids): both copies must land on the same side.
    iqa = [rec(i, "iqa") for i in range(n)]
    return iqa + [rec(1000 + i, "iqa", sha=r.sha256) for i, r in enumerate(iqa)] + [rec(i, "iaa") for i in range(n)]


def test_split_is_sized_by_the_fraction_disjoint_by_image_hash_and_seeded():
    train, val = validation_split(records(), fraction=0.1, seed=0)
    assert {r.sha256 for r in train}.isdisjoint({r.sha256 for r in val})
    assert len(train) + len(val) == len(records())
    for task in ("iqa", "iaa"):
        images = {r.sha256 for r in val if r.task == task}
        assert 8 <= len(images) <= 35, (task, len(images))  # 10% of 200 images, binomial spread
    assert sum(r.task == "iqa" for r in val) == 2 * len({r.sha256 for r in val if r.task == "iqa"})
    again = validation_split(list(reversed(records())), fraction=0.1, seed=0)[1]
    assert {r.id for r in again} == {r.id for r in val}  # order of the input does not matter
    assert {r.id for r in validation_split(records(), fraction=0.1, seed=1)[1]} != {r.id for r in val}


def test_adding_records_never_moves_an_image_between_sides():
    train, val = validation_split(records(100), fraction=0.1, seed=0)
    train2, val2 = validation_split(records(200), fraction=0.1, seed=0)
    assert {r.id for r in train} <= {r.id for r in train2} and {r.id for r in val} <= {r.id for r in val2}


def test_cap_per_task_and_zero_fraction():
    _, val = validation_split(records(), fraction=0.5, seed=0, max_per_task=3)
    assert len({r.sha256 for r in val if r.task == "iqa"}) == 3 and sum(r.task == "iaa" for r in val) == 3
    assert validation_split(records(), fraction=0, seed=0) == (records(), [])


def test_prepare_writes_a_validation_manifest_never_from_the_test_sets(tiny_data_config, tmp_path):
    from tatar.data.prepare import prepare
    from tatar.records import read_records

    tiny_data_config.validation.fraction = 0.3
    manifests = prepare(tiny_data_config, tmp_path)
    val = read_records(tmp_path / "data/manifests/val.jsonl", ManifestRecord)
    train = read_records(manifests.train, ManifestRecord)
    test = [r for p in manifests.test.values() for r in read_records(p, ManifestRecord)]
    assert {"iqa", "iaa"} == {r.task for r in val}
    assert {r.sha256 for r in val}.isdisjoint({r.sha256 for r in train} | {r.sha256 for r in test})
    assert all(r.split == "train" for r in val)
