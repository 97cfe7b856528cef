"""Hard rules (tatar.validation.rules): each rule passes a good record and fails the broken ones, naming why."""

import pytest
from validation_fixtures import IAA_THINK, NARROW, row

from tatar.config import ValidateConfig
from tatar.parsing import format_target
from tatar.records import ATTRIBUTES, RationaleRecord
from tatar.score_mentions import score_mentions
from tatar.validation.aspects import aspects_touched
from tatar.validation.rules import RULES, first_failure

CFG = ValidateConfig()


def record(**kw) -> RationaleRecord:
    return RationaleRecord.model_validate(row("r1", **kw))


def failure(**kw):
    return first_failure(record(**kw), CFG)


@pytest.mark.parametrize("task", ["iqa", "iaa"])
def test_valid_records_pass_every_rule(task):
    rec = record(task=task)
    assert {name: rule(rec, CFG) for name, rule in RULES.items()} == dict.fromkeys(RULES)


# ------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("raw, detail", [
    ("<think>fine detail is soft.\n<answer>72.35</answer>", "</think> x0"),
    ("<think>soft.</think>\n<answer>72.35</answer>\n<answer>72.35</answer>", "<answer> x2"),
    ("<answer>72.35</answer>\n<think>soft.</think>", "out of order"),
    ("fine detail is soft, 72.35", "<think> x0"),
])
def test_structure_rejects_broken_raw_text(raw, detail):
    found = failure(raw=raw)
    assert found.check == "structure" and found.detail.startswith("raw:") and detail in found.detail


def test_structure_rejects_a_think_that_breaks_the_training_target():
    think = "Edges are soft and smeared.</think> Smooth areas are clean, free of grain and compression blocks."
    found = failure(think=think, raw=format_target("Edges are soft.", 72.35))
    assert found.check == "structure" and found.detail.startswith("target:")


# ---------------------------------------------------------------------------------------------- answer
@pytest.mark.parametrize("overrides, detail", [
    ({"answer": "70.00"}, "!= ground truth 72.35"),
    ({"answer": "seventy"}, "not a single number"),
    ({"answer": "72.35 73"}, "not a single number"),
    ({"raw": format_target("Soft edges.", 72.35).replace("72.35</answer>", "about 72</answer>")}, "raw <answer>"),
])
def test_answer_must_be_one_number_equal_to_the_ground_truth(overrides, detail):
    found = failure(**overrides)
    assert found.check == "answer" and detail in found.detail


def test_answer_equal_to_the_ground_truth_at_two_decimals_passes():
    # The rule compares values; the NN.NN format is the GX suite's answer-format expectation.
    assert RULES["answer"](record(score=40.0, answer="40"), CFG) is None
    assert RULES["answer"](record(score=40.004, answer="40.00"), CFG) is None


# --------------------------------------------------------------------------------------- contamination
@pytest.mark.parametrize("snippet, kind", [
    ('<tool_call>{"name": "zoom"}</tool_call>', "tool call"),
    ("<|im_start|>", "special token"),
    ("```json", "code fence"),
    ("\nassistant: the image", "role prefix"),
    ("{score}", "template leftover"),
    ("{{ image }}", "template leftover"),
    ("<image>", "markup tag"),
])
def test_contamination_in_think_is_named(snippet, kind):
    think = "Fine detail is soft and edges look smeared, " + snippet + " while smooth areas stay clean."
    found = failure(think=think, raw=format_target(think, 72.35))
    assert found.check == "contamination" and found.detail.startswith(f"think: {kind}")


def test_contamination_around_the_tags_in_raw_is_named():
    think = row("x")["think"]
    found = failure(raw="Assistant: " + format_target(think, 72.35) + "<|im_end|>")
    assert found.check == "contamination" and found.detail.startswith("raw: special token")


def test_contract_tags_and_ordinary_punctuation_are_not_contamination():
    think = "Edges are soft (a 3x3 blur at most) - but colour: natural; grain: none. Quality is good, not flawless."
    assert failure(think=think, raw=format_target(think, 72.35)) is None


# ------------------------------------------------------------------------------------------ score leak
@pytest.mark.parametrize("mention", ["72", "72.4", "72.35", "7.2/10", "7.2 out of 10", "72 out of 100", "72%",
                                     "72 percent", "0.72", "3.9/5", "a 7.2"])
def test_score_or_its_paraphrase_in_think_leaks(mention):
    think = f"Fine detail is slightly soft, so I would put it at {mention} overall, clean and free of grain."
    found = failure(think=think, raw=format_target(think, 72.35))
    assert found.check == "score_leak" and mention.split()[-1] in found.detail


@pytest.mark.parametrize("mention", ["50%", "3 sentences", "8x8 blocks", "a 2.2 gamma", "1/3 of the frame"])
def test_other_numbers_are_not_leaks(mention):
    think = f"Fine detail is slightly soft across {mention}, while smooth areas stay clean and free of grain."
    assert failure(think=think, raw=format_target(think, 72.35)) is None


def test_leak_tolerance_comes_from_params():
    think = "Fine detail is slightly soft; call it 71 at most, while smooth areas stay clean and free of grain."
    rec = record(think=think, raw=format_target(think, 72.35))
    assert first_failure(rec, CFG) is None  # 1.35 away: not the score
    assert first_failure(rec, ValidateConfig(score_leak_tolerance=1.5)).check == "score_leak"


def test_score_mentions_rescale_units():
    found = dict(score_mentions("7.2/10 and 72% and 0.72"))
    assert found == {"7.2/10": pytest.approx([72.0]), "72%": [72.0], "0.72": pytest.approx([0.72, 72.0, 7.2])}


# ---------------------------------------------------------------------------------- attribute coverage
def test_narrow_iaa_narrative_fails_coverage_and_names_what_it_touched():
    assert aspects_touched(NARROW) == ["theme", "emotion", "originality"]
    found = failure(task="iaa", think=NARROW, raw=format_target(NARROW, 72.35))
    assert found.check == "attribute_coverage"
    assert found.detail == "touches 3/8 aspects (theme, emotion, originality), need 5"


def test_coverage_threshold_is_a_param_and_iqa_is_exempt():
    rec = record(task="iaa", think=NARROW, raw=format_target(NARROW, 72.35))
    assert first_failure(rec, ValidateConfig(min_attributes=3)) is None
    assert first_failure(record(task="iqa", think=NARROW, raw=format_target(NARROW, 72.35)), CFG) is None


def test_full_narrative_touches_all_eight_aspects():
    assert aspects_touched(IAA_THINK) == list(ATTRIBUTES)
