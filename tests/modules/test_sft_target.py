"""The supervised completion the VLM stages train on."""

import pytest

from marc.data.prompts import chosen_option_text
from marc.modules.vlm_stage import sft_target
from marc.rl.answers import is_correct

CAPTIONS = ["a grey plain background with a red circle stays still", "a teal striped background"]
OPTIONS = ["A. blue", "B. red", "C. green", "D. pink"]


def test_reasoning_is_the_target_caption_then_the_chosen_option():
    target = sft_target(CAPTIONS, [0], None, "B", OPTIONS)
    assert target == (
        "<think> a grey plain background with a red circle stays still . the answer is red "
        "</think> <answer> B </answer>"
    )
    assert is_correct(target, "<answer>B</answer>", "multiple choice")


def test_two_events_name_their_backgrounds_only():
    target = sft_target(CAPTIONS, [0, 1], None, "A", ["A. teal striped", "B. grey plain"])
    assert target.startswith("<think> a grey plain background and a teal striped background .")
    assert "the answer is teal striped </think>" in target


def test_without_options_or_events_the_target_falls_back():
    assert sft_target(CAPTIONS, [1], None, "C") == (
        "<think> a teal striped background </think> <answer> C </answer>"
    )
    # Rows without event captions (real data) use their own reasoning text.
    assert sft_target([], [], "<think>look</think>", "3.5", None) == (
        "<think> look </think> <answer> 3.5 </answer>"
    )


def test_chosen_option_text_needs_a_matching_letter():
    assert chosen_option_text(OPTIONS, "D") == "pink"
    assert chosen_option_text(OPTIONS, "E") is None
    assert chosen_option_text(["A."], "A") is None
    assert chosen_option_text(None, "A") is None
    # Options are read by the same parser as scoring uses.
    assert chosen_option_text(["(A) blue", "(B) red"], "B") == "red"


def test_option_text_answers_name_the_option_and_score_as_its_letter():
    target = sft_target(CAPTIONS, [0], None, "B", OPTIONS, answer_with="option_text")
    assert target == (
        "<think> a grey plain background with a red circle stays still </think> "
        "<answer> red </answer>"
    )
    assert is_correct(target, "<answer>B</answer>", "multiple choice", options=OPTIONS)
    assert not is_correct(target, "<answer>A</answer>", "multiple choice", options=OPTIONS)
    # Without the options an option's text cannot be read as a letter.
    assert not is_correct(target, "<answer>B</answer>", "multiple choice")


def test_option_text_falls_back_to_the_letter_without_options():
    assert sft_target(CAPTIONS, [1], None, "C", answer_with="option_text").endswith(
        "<answer> C </answer>"
    )


def test_unknown_answer_form_is_refused():
    with pytest.raises(ValueError, match="answer_with"):
        sft_target(CAPTIONS, [0], None, "B", OPTIONS, answer_with="word")
