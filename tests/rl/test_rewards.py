"""Tests for the rewards, with values worked out by hand."""

import pytest
import torch

from marc.rl.rewards import (
    AccuracyReward,
    CombinedReward,
    FormatReward,
    RetentionReward,
    RewardContext,
    retention_ratio,
)

GOOD_B = "<think>the square is red</think>\n<answer>B</answer>"
GOOD_C = "<think>hmm</think><answer>C</answer>"
BAD_COMPLETIONS = [
    "",  # empty
    "<think>x</think><answer>B",  # truncated
    "<think>x</think><answer> B",  # truncated, space
    "<answer>B</answer>",  # correct answer, no think block: format 0 only
    "<think>x<answer>B</answer>",  # malformed think
    "\x00\ufffd<<<>>></answer><answer>",  # garbage
    "🙂" * 100,
]


def test_accuracy_reward_well_formed_and_broken():
    reward = AccuracyReward()
    completions = [GOOD_B, GOOD_C, *BAD_COMPLETIONS]
    scores = reward(completions, ["<answer>B</answer>"] * len(completions), RewardContext())
    assert scores.dtype == torch.float32
    assert scores.tolist() == [1, 0, 0, 0, 0, 1, 1, 0, 0]
    assert reward.name == "accuracy"


def test_accuracy_reward_uses_problem_type_and_tolerance():
    context = RewardContext(problem_type="numerical")
    completions = ["<answer>100.5</answer>", "<answer>102</answer>"]
    exact = AccuracyReward(rule="exact")
    assert exact(completions, ["100"] * 2, context).tolist() == [1, 0]
    assert AccuracyReward(tolerance=0.05, rule="exact")(
        completions, ["100"] * 2, context
    ).tolist() == [1, 1]
    # Video-R1's rule (the default): "100.5" has a decimal point and "100" has none.
    assert AccuracyReward()(completions, ["100"] * 2, context).tolist() == [0, 0]


def test_accuracy_and_retention_read_option_text_with_the_options():
    options = ["A. blue", "B. red", "C. green", "D. pink"]
    completions = ["<think>x</think><answer>red</answer>", "<think>x</think><answer>pink</answer>"]
    with_options = RewardContext(a_teacher=1.0, options=options)
    assert AccuracyReward()(completions, ["B", "B"], with_options).tolist() == [1, 0]
    assert AccuracyReward()(completions, ["B", "B"], RewardContext()).tolist() == [0, 0]
    retention = RetentionReward(alpha=1.0, tau=0.25)
    assert retention(completions, ["B", "B"], with_options).tolist() == [0.25, 0]


def test_format_reward():
    completions = [GOOD_B, "  <think></think><answer>x</answer>\n", *BAD_COMPLETIONS]
    scores = FormatReward()(completions, ["B"] * len(completions), RewardContext())
    assert scores.tolist() == [1, 1] + [0] * len(BAD_COMPLETIONS)


def test_rewards_need_one_answer_per_completion():
    with pytest.raises(ValueError, match="one reference answer per completion"):
        FormatReward()([GOOD_B, GOOD_C], ["B"], RewardContext())


@pytest.mark.parametrize(
    ("a_student", "a_teacher", "eta_max", "expected"),
    [
        (0.5, 1.0, None, 0.5),
        (0.5, 0.5, None, 1.0),
        (1.0, 0.5, None, 2.0),
        (1.0, 0.5, 1.2, 1.2),
        (0.25, 0.0, None, 1.0),  # teacher never right, student sometimes: retains all
        (0.0, 0.0, None, 0.0),
    ],
)
def test_retention_ratio(a_student, a_teacher, eta_max, expected):
    assert retention_ratio(a_student, a_teacher, eta_max) == pytest.approx(expected)


def test_retention_ratio_rejects_non_accuracies():
    with pytest.raises(ValueError, match="a_teacher"):
        retention_ratio(0.5, 1.5)
    with pytest.raises(ValueError, match="a_teacher"):
        retention_ratio(0.5, float("nan"))


def test_retention_reward_by_hand():
    reward = RetentionReward(alpha=1.0, tau=0.6)
    answers = ["<answer>B</answer>"] * 4
    # Student 2/4 right, teacher 1.0: eta = 0.5 < tau, so nothing.
    half = [GOOD_B, GOOD_B, GOOD_C, ""]
    assert reward(half, answers, RewardContext(a_teacher=1.0)).tolist() == [0, 0, 0, 0]
    # Same group, teacher 0.5: eta = 1, r_c = 0.4 for correct completions, 0 otherwise.
    scores = reward(half, answers, RewardContext(a_teacher=0.5))
    assert scores.tolist() == pytest.approx([0.4, 0.4, 0.0, 0.0])
    # Teacher never right, student sometimes right: eta = 1.
    scores = reward(half, answers, RewardContext(a_teacher=0.0))
    assert scores.tolist() == pytest.approx([0.4, 0.4, 0.0, 0.0])
    # Nobody right: zeros, no division by zero.
    wrong = [GOOD_C, "", "<answer>B", "junk"]
    assert reward(wrong, answers, RewardContext(a_teacher=0.0)).tolist() == [0, 0, 0, 0]


def test_retention_reward_alpha_and_eta_max():
    answers = ["B"] * 2
    group = [GOOD_B, GOOD_B]  # a_student = 1, a_teacher = 0.5: eta = 2
    context = RewardContext(a_teacher=0.5)
    assert RetentionReward(alpha=2.0, tau=0.6)(group, answers, context).tolist() == (
        pytest.approx([2.8, 2.8])
    )
    capped = RetentionReward(alpha=1.0, tau=0.6, eta_max=1.0)(group, answers, context)
    assert capped.tolist() == pytest.approx([0.4, 0.4])


def test_retention_reward_needs_a_teacher():
    with pytest.raises(ValueError, match="a_teacher"):
        RetentionReward()([GOOD_B], ["B"], RewardContext())


def test_combined_reward_applies_weights_and_reports_components():
    combined = CombinedReward(
        [AccuracyReward(), FormatReward(weight=0.5), RetentionReward(alpha=1.0, tau=0.6)]
    )
    completions = [GOOD_B, "<answer>B</answer>", GOOD_C, ""]
    answers = ["<answer>B</answer>"] * 4
    total, components = combined(completions, answers, RewardContext(a_teacher=0.5))
    assert combined.names == ["accuracy", "format", "retention"]
    assert components["accuracy"].tolist() == [1, 1, 0, 0]
    assert components["format"].tolist() == [0.5, 0, 0.5, 0]
    assert components["retention"].tolist() == pytest.approx([0.4, 0.4, 0, 0])
    assert total.tolist() == pytest.approx([1.9, 1.4, 0.5, 0.0])
    assert total.dtype == torch.float32 and total.shape == (4,)


def test_combined_reward_names_must_be_unique():
    with pytest.raises(ValueError, match="accuracy"):
        CombinedReward([AccuracyReward(), AccuracyReward()])
    combined = CombinedReward(
        [AccuracyReward(), AccuracyReward(tolerance=0.1, rule="exact", name="acc_loose")]
    )
    assert combined.names == ["accuracy", "acc_loose"]


def test_every_reward_scores_broken_completions_zero():
    rewards = [AccuracyReward(), FormatReward(), RetentionReward()]
    # Accuracy reads the answer whatever the rest looks like, so leave out the two
    # completions whose <answer> block is intact.
    broken = [c for c in BAD_COMPLETIONS if not c.endswith("<answer>B</answer>")]
    for reward in rewards:
        scores = reward(broken, ["<answer>B</answer>"] * len(broken), RewardContext(a_teacher=1))
        assert scores.tolist() == [0.0] * len(broken), reward.name


def test_empty_group():
    total, components = CombinedReward([AccuracyReward(), FormatReward()])([], [], RewardContext())
    assert total.shape == (0,) and components["format"].shape == (0,)
