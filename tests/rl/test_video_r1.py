"""Video-R1's accuracy reward per problem type (tulerfeng/Video-R1, open_r1/grpo.py)."""

from __future__ import annotations

import pytest

from marc.rl.rewards import AccuracyReward, RetentionReward, RewardContext
from marc.rl.video_r1 import (
    numerical_score,
    regression_score,
    rouge_f,
    video_r1_score,
    word_error_rate,
)

OPTIONS = ["A. red", "B. green", "C. blue"]


def _answer(text: str) -> str:
    return f"<think> ... </think> <answer>{text}</answer>"


@pytest.mark.parametrize(
    ("prediction", "solution", "problem_type", "expected"),
    [
        # multiple choice: the option letter (and the option's text).
        ("B", "<answer>B</answer>", "multiple choice", 1.0),
        ("green", "<answer>B</answer>", "multiple choice", 1.0),
        ("C", "<answer>B</answer>", "multiple choice", 0.0),
        # numerical: the same decimal notation, then equal to 2 decimals.
        ("3", "<answer>3</answer>", "numerical", 1.0),
        ("3.0", "<answer>3</answer>", "numerical", 0.0),  # Video-R1: decimal point mismatch
        ("3.004", "<answer>3.0</answer>", "numerical", 1.0),
        ("3.01", "<answer>3.0</answer>", "numerical", 0.0),
        ("1,000", "<answer>1000</answer>", "numerical", 0.0),  # a comma counts as decimal
        ("three", "<answer>3</answer>", "numerical", 0.0),
        # OCR: 1 - word error rate.
        ("open now", "<answer>open now</answer>", "OCR", 1.0),
        ("open", "<answer>open now</answer>", "OCR", 0.5),
        ("Open now", "<answer>open now</answer>", "OCR", 0.5),  # case-sensitive, as Video-R1
        ("we are closed today", "<answer>open now</answer>", "OCR", 0.0),  # clamped
        # regression: 1 - relative error, clamped.
        ("3.0", "<answer>3.0</answer>", "regression", 1.0),
        ("2.4", "<answer>3.0</answer>", "regression", 0.8),
        ("9", "<answer>3.0</answer>", "regression", 0.0),
        ("nan", "<answer>3.0</answer>", "regression", 0.0),  # Video-R1 would give 1.0
    ],
)
def test_each_problem_type_gets_video_r1s_reward(prediction, solution, problem_type, expected):
    score = video_r1_score(_answer(prediction), solution, problem_type, OPTIONS)
    assert score == pytest.approx(expected, abs=1e-6)


def test_free_form_is_the_mean_of_rouge_1_2_and_l():
    reference, hypothesis = "a red screen turns blue", "the red screen turned blue"
    # Stemmed tokens: a red screen turn blue / the red screen turn blue: 4 of 5 unigrams,
    # 3 of 4 bigrams (red screen, screen turn, turn blue), LCS 4.
    expected = (4 / 5 + 3 / 4 + 4 / 5) / 3
    assert rouge_f(reference, hypothesis) == pytest.approx(expected)
    score = video_r1_score(_answer(hypothesis), f"<answer>{reference}</answer>", "free-form")
    assert score == pytest.approx(expected)
    assert video_r1_score(_answer("x"), "<answer>a b</answer>", "free-form") == 0.0


def test_rules_match_video_r1s_functions_on_edge_cases():
    assert word_error_rate("a b c", "a x c d") == pytest.approx(2 / 3)
    assert word_error_rate("", "anything") == 1.0  # Video-R1 divides by max(1, m)
    assert numerical_score("", "4") == 0.0
    assert regression_score("-3", "3") == 0.0
    # Video-R1: (0 + 1e-9) / (0 + 1e-9) is a relative error of 1, even for an exact 0.
    assert regression_score("0", "0") == 0.0
    assert regression_score("2.0", "2") == pytest.approx(1.0)
    # No <answer>: 0 for every type.
    for kind in ("multiple choice", "numerical", "OCR", "free-form", "regression"):
        assert video_r1_score("I think B", "<answer>B</answer>", kind, OPTIONS) == 0.0


def test_accuracy_and_retention_rewards_use_the_graded_scores():
    completions = [_answer("open now"), _answer("open"), _answer("closed"), _answer("x y z w")]
    answers = ["<answer>open now</answer>"] * 4
    context = RewardContext(problem_type="OCR", a_teacher=0.5)
    accuracy = AccuracyReward()(completions, answers, context).tolist()
    assert accuracy == pytest.approx([1.0, 0.5, 0.0, 0.0])
    # a_student = mean accuracy 0.375; eta = 0.75; r_c = 0.15 for completions above 0.1.
    retention = RetentionReward(tau=0.6)(completions, answers, context).tolist()
    assert retention == pytest.approx([0.15, 0.15, 0.0, 0.0])
    given = RewardContext(problem_type="OCR", a_teacher=0.5, scores=[0.2, 0.0, 0.0, 0.0])
    assert AccuracyReward()(completions, answers, given).tolist() == pytest.approx([0.2, 0, 0, 0])


def test_image_rows_get_no_retention_reward_and_need_no_teacher():
    completions = [_answer("B")] * 2
    image = RewardContext(data_type="image", a_teacher=None)
    assert RetentionReward()(completions, ["B", "B"], image).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="a_teacher"):
        RetentionReward()(completions, ["B", "B"], RewardContext(a_teacher=None))
    both = RetentionReward(applies_to=("video", "image"))
    assert both(
        completions, ["B", "B"], RewardContext(data_type="image", a_teacher=1.0)
    ).tolist() == pytest.approx([0.4, 0.4])
