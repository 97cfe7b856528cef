"""The reference teacher's writing varies with the image: near-unique rationales on synthetic photographs (the
validate stage rejects repeated ones), grounded enough for the reference judge, with measures and encodings
computed once per image."""

import re
from collections import Counter

import pytest

from tatar.config import SyntheticConfig
from tatar.data.synthetic import build_synthetic
from tatar.records import ATTRIBUTES
from tatar.standins import teacher as reference
from tatar.standins.judge import verdict
from tatar.standins.teacher import BadRequest, TeacherRequest, parse_request, rationale
from tatar.teacher.normalise import normalise, sentences
from tatar.teacher.stage import image_data_url
from tatar.validation.aspects import aspects_touched
from tatar.validation.expectations import normalise_rationale

MAX_DUPLICATES = 0.03  # the target on the embedded default: under 3% repeated rationales per task


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """Three photographs and a dead-leaves scene of the embedded default at 64 px: 64 IQA and 56 IAA images (a few
    seconds)."""
    cfg = SyntheticConfig(image_size=64, sources=["astronaut", "retina", "motorcycle_left", "coffee"],
                          test_sources=["coffee"], iqa_per_source=16, iaa_variants_per_source=14, crops_per_source=1,
                          dead_leaves=1)
    built = build_synthetic(cfg, 0, tmp_path_factory.mktemp("reference_synthetic"))
    return [r for r in built if r.split == "train"]


def duplicate_rate(thinks: list[str]) -> float:
    """Repeats as the validate stage counts them (case, punctuation and spacing folded away)."""
    counts = Counter(normalise_rationale(t) for t in thinks)
    return sum(n - 1 for n in counts.values()) / len(thinks)


def think(request: TeacherRequest, words: tuple[int, int]) -> str:
    return normalise(rationale(request), request.task, request.score, words).think


def test_iqa_rationales_are_nearly_unique_and_keep_the_contract(rows):
    iqa = [r for r in rows if r.task == "iqa"]
    images = [r.path.read_bytes() for r in iqa]
    assert len(iqa) == 64
    at_labels = [think(TeacherRequest("iqa", float(r.score), {}, image), (30, 50)) for r, image in zip(iqa, images)]
    assert duplicate_rate(at_labels) < MAX_DUPLICATES, Counter(at_labels).most_common(2)
    for text in at_labels:
        assert len(sentences(text)) == 2 and not re.search(r"\d", text), text
        assert not re.search(r"composition|subject|mood|aesthetic|beautiful|framing", text, re.IGNORECASE), text
    # The variety comes from the images, not from the scores: every image at one score of each band.
    for score in (8.0, 31.0, 47.0, 66.0, 93.0):
        same_score = [think(TeacherRequest("iqa", score, {}, image), (30, 50)) for image in images]
        assert duplicate_rate(same_score) < MAX_DUPLICATES, (score, Counter(same_score).most_common(2))


def test_iqa_rationales_name_what_the_measures_find(rows):
    """The reference judge, which checks each claimed defect against the same measures, keeps nearly all of them
    at the synthetic labels (a clean-measuring image with a low label cannot be explained honestly)."""
    iqa = [r for r in rows if r.task == "iqa"]
    kept = 0
    for r in iqa:
        request = TeacherRequest("iqa", float(r.score), {}, r.path.read_bytes())
        kept += verdict(request, think(request, (30, 50))).decision == "keep"
    assert kept >= 0.9 * len(iqa)


@pytest.mark.parametrize("with_notes", [True, False])
def test_iaa_narratives_are_nearly_unique(rows, with_notes):
    iaa = [r for r in rows if r.task == "iaa"]
    requests = {}  # identical prompts are asked once by the stage (same cache key): count distinct requests
    for r in iaa:
        notes = r.attributes if with_notes else {}
        image = None if with_notes else r.path.read_bytes()
        requests[(float(r.score), tuple(sorted(notes.items())), image)] = TeacherRequest("iaa", float(r.score),
                                                                                        notes, image)
    thinks = [think(request, (100, 450)) for request in requests.values()]
    assert len(thinks) >= 35 and duplicate_rate(thinks) < MAX_DUPLICATES
    for text in thinks:
        assert aspects_touched(text) == list(ATTRIBUTES) and not re.search(r"\d", text)


def test_image_measures_are_computed_once_per_image_content(rows, monkeypatch):
    calls = []
    measure = reference.quality_view
    monkeypatch.setattr(reference, "quality_view", lambda pixels: calls.append(1) or measure(pixels))
    monkeypatch.setattr(reference, "_quality_cache", {})
    path = next(r.path for r in rows if r.task == "iqa")
    for score in (12.0, 55.0, 90.0):
        rationale(TeacherRequest("iqa", score, {}, path.read_bytes()))  # a fresh bytes object each time
    assert len(calls) == 1


def test_each_image_file_is_encoded_once_while_unchanged(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG fake bytes")
    first = image_data_url(path)
    assert image_data_url(path) is first and first.startswith("data:image/png;base64,")
    path.write_bytes(b"\x89PNG other, longer bytes")  # a changed file is read again
    assert image_data_url(path) != first


def test_a_data_url_is_decoded_only_on_a_cache_miss_and_writes_like_raw_bytes(rows, monkeypatch):
    path = next(r.path for r in rows if r.task == "iqa")
    url = image_data_url(path)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "TASK: iqa\nSCORE: 41.50 / 100"}]}]
    direct = rationale(TeacherRequest("iqa", 41.5, {}, path.read_bytes()))
    decoded = []
    monkeypatch.setattr(reference.base64, "b64decode", lambda text: decoded.append(1) or b"")
    assert rationale(parse_request(messages)) == direct and not decoded  # measures known: no decoding at all


def test_undecodable_image_is_a_bad_request():
    request = TeacherRequest("iqa", 50.0, {}, image_b64="not base64!")
    with pytest.raises(BadRequest, match="base64"):
        rationale(request)
