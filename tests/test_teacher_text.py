"""Teacher text: prompt rendering per task, the normaliser's edge cases, and the reference teacher's writing."""

import itertools
import random
import re

import pytest
from teacher_fixtures import NOTES, make_records

from tatar.config import TeacherConfig
from tatar.parsing import format_target, word_count
from tatar.records import ATTRIBUTES
from tatar.standins.measures import DEFECTS, QualityView, Spot
from tatar.standins.teacher import (
    ATTRIBUTE_LEADS,
    IQA_BAD,
    TeacherRequest,
    iqa_think,
    parse_request,
    quote,
    rationale,
)
from tatar.teacher.normalise import Rejected, normalise, sentences
from tatar.teacher.prompts import load_prompts
from tatar.teacher.stage import teacher_job

IQA_WORDS, IAA_WORDS = TeacherConfig().words_iqa, TeacherConfig().words_iaa
IQA = ("Fine detail is clearly blurred and edges look smeared rather than crisp across the whole frame. "
       "The damage is noticeable but not destructive, so the technical quality lands in the middle range.")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("teacher_text"), n_iqa=2, n_iaa=2)


# ------------------------------------------------------------------------------------------- prompts
def test_iqa_prompt_sends_image_and_score_but_no_notes(records):
    rec = records[0].model_copy(update={"score_100": 72.5, "attributes": {"theme": "ignored for IQA"}})
    messages = teacher_job(rec, TeacherConfig(), load_prompts("v1")).messages()
    system, user = messages
    assert system["role"] == "system" and "<think>" in system["content"]
    image, text = user["content"]
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    assert "TASK: iqa" in text["text"] and "SCORE: 72.50 / 100" in text["text"] and "ATTRIBUTE" not in text["text"]
    assert "two sentences" in text["text"] and "${" not in text["text"]


def test_iaa_prompt_with_notes_is_text_only_and_lists_notes_in_order(records):
    notes = {name: NOTES[name] for name in reversed(ATTRIBUTES)}  # given out of order
    notes["theme"] = "A quiet\n  domestic moment."  # line breaks must not break the one-line format
    rec = records[2].model_copy(update={"attributes": notes, "score_100": 41.0})
    (user,) = teacher_job(rec, TeacherConfig(), load_prompts("v1")).messages()[1]["content"]
    assert user["type"] == "text"
    lines = [line for line in user["text"].splitlines() if line.startswith("ATTRIBUTE ")]
    assert [line.split()[1].rstrip(":") for line in lines] == list(ATTRIBUTES)
    assert "ATTRIBUTE theme: A quiet domestic moment." in lines
    assert "TASK: iaa" in user["text"] and "SCORE: 41.00 / 100" in user["text"]


def test_iaa_prompt_without_notes_attaches_the_image(records):
    rec = records[3]
    assert rec.attributes is None
    image, text = teacher_job(rec, TeacherConfig(), load_prompts("v1")).messages()[1]["content"]
    assert image["type"] == "image_url" and "TASK: iaa" in text["text"] and "ATTRIBUTE" not in text["text"]


def test_reference_teacher_parses_what_the_prompts_render(records):
    for rec in records:
        parsed = parse_request(teacher_job(rec, TeacherConfig(), load_prompts("v1")).messages())
        assert (parsed.task, parsed.score, parsed.attributes) == (rec.task, rec.score_100, rec.attributes or {})
        assert (parsed.image is not None) == (rec.task == "iqa" or rec.attributes is None)


def test_unknown_prompt_version_names_the_available_ones():
    with pytest.raises(FileNotFoundError, match=r"v9.*available: \['v1'\]"):
        load_prompts("v9")


# ------------------------------------------------------------------------------------------- normalise
def test_iqa_keeps_the_first_two_sentences():
    raw = format_target(IQA + " Also, the subject is charming and the composition is lovely.", 10)
    out = normalise(raw, "iqa", 51.25, IQA_WORDS)
    assert out.think == IQA and len(sentences(out.think)) == 2 and out.answer == "51.25"


def test_iqa_is_cut_to_fifty_words_and_still_ends_a_sentence():
    distinct = [f"soft{a}{b}" for a in "abcdefgh" for b in "abcdefghij"]  # 80 different words, no loop
    long = " ".join(distinct[:40]) + " and more. " + " ".join(distinct[40:70]) + " everywhere."
    out = normalise(format_target(long, 50), "iqa", 50, IQA_WORDS)
    assert out.words == 50 == word_count(out.think) and out.think.endswith(".")


def test_a_degenerate_reply_is_rejected_not_cut_to_size():
    """A loop cut to 50 words is still a loop: "very very very ..." was once accepted as an IQA rationale."""
    for loop in ("The image is " + "very " * 80 + "blurry.", (IQA + " ") * 3,
                 "Edges look soft and the image is soft and the image is soft and the image is soft overall."):
        with pytest.raises(Rejected, match="degenerate"):
            normalise(format_target(loop, 50), "iqa", 50, IQA_WORDS)


def test_the_score_in_words_is_caught_like_digits():
    with pytest.raises(Rejected, match="the score inside <think> in words"):
        normalise(format_target(IQA + " It deserves seventy-two.", 72), "iaa", 72, (10, 450))
    # a sentence that rates in words is dropped like one that rates in digits
    for rating in ("I would rate it seventy-two out of a hundred.", "It is about seven point two out of ten."):
        out = normalise(format_target(IQA + " " + rating, 72), "iaa", 72, (10, 450))
        assert "seven" not in out.think and out.dropped == 1
    # small numbers in words are prose, not scores
    assert normalise(format_target(IQA + " The two figures sit in one corner.", 2), "iaa", 2, (10, 450)).dropped == 0


def test_reasoning_model_reply_shapes_yield_the_requested_rationale():
    """Raw R1: its own <think> first; template-opened: a lone </think>; the rationale is the requested block."""
    requested = format_target(IQA, 61.5)
    mine = "Okay, the user wants two sentences. The score is 61.5, so moderate. Let me write it."
    for raw in (f"<think>{mine}</think>\n\n{requested}", f"{mine}\n</think>\n\n{requested}"):
        out = normalise(raw, "iqa", 61.5, IQA_WORDS)
        assert out.think == normalise(requested, "iqa", 61.5, IQA_WORDS).think and "Okay" not in out.think


def test_a_sentence_stating_the_score_is_stripped():
    raw = format_target(IQA + " I would rate it 48.20 out of 100.", 48.2)
    out = normalise(raw, "iaa", 48.2, (10, 450))
    assert "48" not in out.think and out.dropped == 1


@pytest.mark.parametrize("think, reason", [
    ("The 48.20 quality comes from blur. " + IQA, "number inside"),
    ("Step 1: look at the edges. " + IQA, "number inside"),
    ("1. The edges are soft. 2. The noise is low. " + IQA, "number inside"),
])
def test_numbers_in_think_are_rejected(think, reason):
    with pytest.raises(Rejected, match=reason):
        normalise(format_target(think, 48.2), "iqa", 48.2, IQA_WORDS)


@pytest.mark.parametrize("raw, reason", [
    (IQA + "\n<answer>50</answer>", "exactly one"),
    (f"<think>{IQA}</think>", "exactly one"),
    # (two think blocks are a reasoning model's own reasoning, then the requested block; three are too many)
    (f"<think>{IQA}</think><think>{IQA}</think><think>{IQA}</think>\n<answer>50</answer>", "exactly one"),
    (f"<answer>50</answer>\n<think>{IQA}</think>", "first"),
    (f"Sure! <think>{IQA}</think>\n<answer>50</answer>", "outside"),
    (f"```\n<think>{IQA}</think>\n<answer>50</answer>\n```", "code fence"),
    (f"assistant: <think>{IQA}</think>\n<answer>50</answer>", "role prefix"),
    (f"<think>{IQA}</think>\n<answer>50</answer><|im_end|>", "token"),
    ("<think>  </think>\n<answer>50</answer>", "empty"),
    (format_target("Blurry and soft.", 50), "fewer than 20"),
])
def test_malformed_replies_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(Rejected, match=reason):
        normalise(raw, "iqa", 50, IQA_WORDS)


def test_iaa_length_is_bounded_both_ways():
    with pytest.raises(Rejected, match="fewer than 80"):
        normalise(format_target(IQA, 60), "iaa", 60, IAA_WORDS)
    with pytest.raises(Rejected, match="more than 450"):
        normalise(format_target(varied(46), 60), "iaa", 60, IAA_WORDS)
    ok = normalise(format_target(varied(12), 60), "iaa", 60, IAA_WORDS)
    assert ok.words == 12 * 10  # IAA is never truncated


def varied(n_sentences: int) -> str:
    """``n_sentences`` different ten-word sentences (copied sentences would be degenerate)."""
    words = (f"{a}{b}{c}" for a in "bdfgklmnprstvz" for b in "aeiouy" for c in "lmnrst")
    return " ".join(" ".join(next(words) for _ in range(10)).capitalize() + "." for _ in range(n_sentences))


# ------------------------------------------------------------------------------------ reference teacher
def test_reference_iqa_rationale_follows_the_contract_and_the_score(records):
    image = records[1].path.read_bytes()  # the blurred image
    for score, verdict in [(3.0, "very poor|bottom"), (45.0, "middle|fair"), (97.0, "excellent|outstanding")]:
        raw = rationale(TeacherRequest("iqa", score, {}, image))
        out = normalise(raw, "iqa", score, (30, 50))  # the prompt's 30-50 words, stricter than the default
        assert len(sentences(out.think)) == 2 and not re.search(r"\d", out.think)
        assert re.search(verdict, out.think), out.think
        assert not re.search(r"composition|subject|mood", out.think)
    assert re.search(r"blur|smear", rationale(TeacherRequest("iqa", 10.0, {}, image)))  # names the measured defect


def test_every_iqa_template_and_factor_pair_fits_the_contract():
    assert set(IQA_BAD) == set(DEFECTS)
    for score in (10.0, 30.0, 50.0, 70.0, 90.0):
        for worst, second in itertools.permutations(DEFECTS, 2):
            for seed in range(3):
                rng = random.Random(seed)
                view = QualityView(
                    severity={f: 0.0 for f in DEFECTS} | {worst: 1.0, second: rng.choice([0.0, 0.2, 0.5])},
                    soft={f: rng.random() for f in DEFECTS} | {worst: 1.0},
                    spots={f: Spot(worst=(rng.randrange(3), rng.randrange(3)), best=(1, 1), spread=rng.random())
                           for f in DEFECTS})
                think = iqa_think(view, score, rng)
                out = normalise(format_target(think, score), "iqa", score, (30, 50))
                assert out.think == think and len(sentences(think)) == 2, think
                assert not re.search(r"\d|composition|subject|mood|aesthetic|beautiful", think, re.IGNORECASE)


@pytest.mark.parametrize("with_notes", [True, False])
def test_reference_iaa_narrative_covers_the_attributes_in_order(records, with_notes):
    request = TeacherRequest("iaa", 77.0, dict(NOTES) if with_notes else {},
                             None if with_notes else records[3].path.read_bytes())
    out = normalise(rationale(request), "iaa", 77.0, IAA_WORDS)
    assert out.words >= 100 and not re.search(r"\d", out.think)
    positions = [min(out.think.index(lead) for lead in ATTRIBUTE_LEADS[a] if lead in out.think) for a in ATTRIBUTES]
    assert positions == sorted(positions)


def test_quotes_from_notes_are_short_and_number_free():
    note = "The frame leans about 6 degrees, so horizontals and verticals run askew and the eye keeps slipping."
    assert quote(note) == "the frame leans"  # cut before the number, the dangling 'about' dropped
    assert len(quote(" ".join(["word"] * 40)).split()) == 12


def test_reference_writing_is_deterministic_per_request(records):
    request = TeacherRequest("iqa", 33.0, {}, records[0].path.read_bytes())
    assert rationale(request) == rationale(request)
    random.seed(1)  # global state must not matter
    assert rationale(request) == rationale(request)
