"""The one strict parser of the output contract, shared by teacher, validation, rewards and evaluation."""

import pytest

from tatar.parsing import format_target, parse_answer, think_text, think_words, word_count


@pytest.mark.parametrize("text, expected", [
    ("<think>sharp</think>\n<answer>72.50</answer>", 72.5),
    ("<answer>3.0</answer>", 3.0),                       # never rescaled: 3.0 on 0-100 stays 3.0
    ("<answer> 88 </answer>", 88.0),
    ("<answer>1</answer> then <answer>2</answer>", 2.0),  # the last answer counts
    ("<answer>72 out of 100</answer>", None),
    ("<answer>7.2/10</answer>", None),
    ("<answer></answer>", None),
    ("72.5", None),
    ("<answer>72.5", None),
    ("<answer>1e3</answer>", None),
    ("<answer>100.5</answer>", None),                    # off the 0-100 scale: no answer
    ("<answer>-3</answer>", None),
    ("<answer>\u0667\u0662</answer>", None),             # non-ASCII digits, which float() would read as 72
    ("<answer>100</answer>", 100.0),
])
def test_parse_answer_is_strict(text, expected):
    assert parse_answer(text) == expected


def test_format_target_round_trips():
    text = format_target(" blur dominates ", 41.234)
    assert text == "<think>blur dominates</think>\n<answer>41.23</answer>"
    assert parse_answer(text) == 41.23 and think_text(text) == "blur dominates" and think_words(text) == 2


def test_answer_only_target_for_thought_dropout():
    assert format_target(None, 50) == "<answer>50.00</answer>"
    assert think_words("<answer>50.00</answer>") == 0


def test_word_count():
    assert word_count("  two  words\n") == 2
