"""Tests for reading and checking answers."""

import pytest

from marc.rl.answers import (
    answer_from_solution,
    extract_answer,
    is_correct,
    normalise_choice,
    normalise_text,
    numbers_match,
    option_letter,
    parse_number,
)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>x</think><answer>B</answer>", "B"),
        ("<answer>  B. red \n</answer>", "B. red"),
        ("<answer>A</answer> then <answer>C</answer>", "C"),
        ("<answer> <answer>D</answer>", "D"),
        ("", None),
        ("<answer> B", None),
        ("<think>x</think><answer>B", None),
        ("B</answer>", None),
        ("<answer>   </answer>", None),
        ("</answer><answer>", None),
        ("no tags at all", None),
        (None, None),
        (42, None),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("B. red", "B"),
        (" b ", "B"),
        ("B)", "B"),
        ("(c) blue square", "C"),
        ("D: left", "D"),
        ("a red circle", None),
        ("red", None),
        ("AB", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_choice(text, expected):
    assert normalise_choice(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3.0),
        ("-2.5", -2.5),
        ("1,000", 1000.0),
        ("50%", 50.0),
        ("about 4.5 meters", 4.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("three", 3.0),
        ("The Three.", 3.0),
        ("many", None),
        ("1e999", None),
        ("", None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_numbers_match_is_relative_to_target():
    assert numbers_match(101.0, 100.0, tolerance=0.01)
    assert not numbers_match(101.5, 100.0, tolerance=0.01)
    assert numbers_match(0.0, 0.0, tolerance=0.01)
    assert not numbers_match(1e-6, 0.0, tolerance=0.01)


def test_normalise_text():
    assert normalise_text("  The Red,  circle! ") == "red circle"
    assert normalise_text("An apple") == "apple"
    assert normalise_text("...") == ""


@pytest.mark.parametrize(
    ("completion", "solution", "problem_type", "expected"),
    [
        ("<answer>B</answer>", "<answer>B</answer>", "multiple choice", True),
        ("<answer>(b) red</answer>", "B", "multiple choice", True),
        ("<answer>C</answer>", "<answer>B</answer>", "multiple choice", False),
        ("<answer>red</answer>", "<answer>B</answer>", "multiple choice", False),
        ("<answer>red</answer>", "Red.", "Multiple_Choice", True),  # bare option text
        ("<answer>3.02</answer>", "<answer>3</answer>", "numerical", True),
        ("<answer>3.1</answer>", "<answer>3</answer>", "numerical", False),
        ("<answer>about 12 m</answer>", "12.1", "regression", True),
        ("<answer>many</answer>", "3", "numerical", False),
        ("<answer>The cat</answer>", "cat", "free-form", True),
        ("<answer>HELLO, world</answer>", "hello world", "OCR", True),
        ("<answer>blue</answer>", "red", "some new type", False),
        ("<answer>.</answer>", ".", "free-form", False),  # empty after normalising
        ("<answer>B", "B", "multiple choice", False),
        ("", "B", "multiple choice", False),
    ],
)
def test_is_correct(completion, solution, problem_type, expected):
    assert is_correct(completion, solution, problem_type) is expected


OPTIONS = ["A. blue", "B. red", "C. grey plain", "D. green"]


@pytest.mark.parametrize(
    ("answer", "solution", "expected"),
    [
        ("red", "B", True),
        ("Red.", "<answer>B</answer>", True),
        ("the grey  plain", "C", True),  # normalised like free text
        ("red", "A", False),
        ("grey", "C", False),  # part of an option's text names no option
        ("B", "B", True),  # a letter still reads as a letter
        ("purple", "B", False),
        ("", "B", False),
    ],
)
def test_multiple_choice_answers_may_name_an_option_by_its_text(answer, solution, expected):
    completion = f"<think>x</think><answer>{answer}</answer>"
    assert is_correct(completion, solution, "multiple choice", options=OPTIONS) is expected


def test_option_letter():
    assert option_letter("green", OPTIONS) == "D"
    assert option_letter("green", None) is None
    assert option_letter("red", ["A. red", "B. red"]) is None  # ambiguous
    assert option_letter("red", ["red", "B. blue"]) is None  # an option without a letter
    assert option_letter("red", ["(A) blue", "(B) red"]) == "B"
    assert option_letter("red", ["A) blue", "B) red"]) == "B"
    assert option_letter("red", ["12", None, "", "B. red"]) == "B"  # odd options are skipped


def test_is_correct_tolerance_argument():
    assert not is_correct("<answer>105</answer>", "100", "numerical", tolerance=0.01)
    assert is_correct("<answer>105</answer>", "100", "numerical", tolerance=0.05)


def test_solution_without_answer_is_a_clear_error():
    assert answer_from_solution("<answer> B </answer>") == "B"
    assert answer_from_solution(" 7 ") == "7"
    with pytest.raises(ValueError, match="no answer"):
        answer_from_solution("<answer></answer>")
    with pytest.raises(ValueError, match="no answer"):
        is_correct("<answer>B</answer>", "", "multiple choice")
