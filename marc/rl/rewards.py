"""Rewards for the G completions of one prompt, each a small class configurable from YAML.

C-GRPO's reward for completion i (docs/DESIGN.md, "C-GRPO") is

    R_i = r_acc + r_format + 1[completion i is correct] * r_c,
    r_c = alpha * max(0, eta - tau),   eta = a_student / a_teacher,

which is ``CombinedReward([AccuracyReward(), FormatReward(), RetentionReward()])``. A reward
is called as ``reward(completions, answers, context) -> Tensor[G]`` (float32, unweighted);
``CombinedReward`` applies each reward's ``weight`` and reports every component under its
``name`` for logging. Empty, truncated or malformed completions score 0 and never raise.

Correctness is computed once per completion: a caller that has scored the completions
(C-GRPO does, once per step) passes them as ``RewardContext.correct`` (exact correctness,
``is_correct``) and ``RewardContext.scores`` (Video-R1's graded accuracy for the problem
type, ``marc.rl.video_r1``), and every reward reads them (:func:`completion_correctness`,
:func:`completion_scores`) instead of scoring again.

Image rows (``RewardContext.data_type == "image"``) get no retention reward: the paper's
"image data does not participate in the compression reward".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from marc.rl.answers import is_correct
from marc.rl.video_r1 import CORRECT_ABOVE, video_r1_score

DEFAULT_TOLERANCE = 0.01  # relative tolerance of numerical answers (is_correct's default)

# A completion is well formed when it is one think block then one answer block.
FORMAT_PATTERN = r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"
_FORMAT = re.compile(FORMAT_PATTERN, re.DOTALL)


@dataclass
class RewardContext:
    """What rewards know about the prompt besides its completions and reference answers."""

    problem_type: str = "multiple choice"
    a_teacher: float | None = None  # teacher accuracy on this question with the full video
    solution: str | None = None  # the raw solution string, for logging and custom rewards
    options: list[str] | None = None  # multiple-choice options ("B. red"): text answers count
    # Each completion's correctness, when the caller has scored them with ``tolerance``.
    correct: list[bool] | None = None
    tolerance: float = DEFAULT_TOLERANCE
    # Each completion's Video-R1 accuracy reward in [0, 1], when the caller has scored them.
    scores: list[float] | None = None
    data_type: str = "video"  # "image" rows get no retention reward
    extras: dict[str, Any] = field(default_factory=dict)


def completion_correctness(
    completions: list[str], answers: list[str], context: RewardContext, tolerance: float
) -> list[bool]:
    """Whether each completion is correct: ``context.correct`` when it was scored with the
    same ``tolerance``, else scored here."""
    if context.correct is not None and tolerance == context.tolerance:
        if len(context.correct) != len(completions):
            raise ValueError(
                f"context.correct has {len(context.correct)} entries for {len(completions)} "
                "completions"
            )
        return list(context.correct)
    return [
        is_correct(completion, answer, context.problem_type, tolerance, context.options)
        for completion, answer in zip(completions, answers)
    ]


def completion_scores(
    completions: list[str], answers: list[str], context: RewardContext
) -> list[float]:
    """Video-R1's accuracy reward of each completion (``marc.rl.video_r1``): ``context.scores``
    when the caller scored them, else scored here."""
    if context.scores is not None:
        if len(context.scores) != len(completions):
            raise ValueError(
                f"context.scores has {len(context.scores)} entries for {len(completions)} "
                "completions"
            )
        return [float(s) for s in context.scores]
    return [
        video_r1_score(completion, answer, context.problem_type, context.options)
        for completion, answer in zip(completions, answers)
    ]


class Reward:
    """Base class: ``reward(completions, answers, context) -> Tensor[G]`` of float32 scores.

    ``answers`` holds one reference answer per completion, tagged (``"<answer>B</answer>"``)
    or bare (``"B"``). Subclasses implement :meth:`score`; ``weight`` is applied by
    :class:`CombinedReward`, not here.
    """

    default_name = "reward"

    def __init__(self, weight: float = 1.0, name: str | None = None):
        if not math.isfinite(weight):
            raise ValueError(f"{type(self).__name__}: weight must be finite, got {weight}")
        self.weight = float(weight)
        self._name = name

    @property
    def name(self) -> str:
        """Name this reward is logged under."""
        return self._name or self.default_name

    def __call__(
        self, completions: list[str], answers: list[str], context: RewardContext
    ) -> torch.Tensor:
        if len(completions) != len(answers):
            raise ValueError(
                f"{self.name} reward: got {len(completions)} completions but {len(answers)} "
                "answers; pass one reference answer per completion"
            )
        return torch.tensor(self.score(completions, answers, context), dtype=torch.float32)

    def score(
        self, completions: list[str], answers: list[str], context: RewardContext
    ) -> list[float]:
        """One score per completion."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight})"


class AccuracyReward(Reward):
    """The accuracy of each completion's answer for ``context.problem_type``.

    ``rule="video_r1"`` (default): Video-R1's accuracy reward for the type, graded in [0, 1]
    for OCR (1 - WER), free-form (ROUGE) and regression (1 - relative error)
    (``marc.rl.video_r1``). ``rule="exact"``: 1.0 when ``is_correct`` (numbers within the
    relative ``tolerance``), else 0.0. Both agree on multiple choice.
    """

    default_name = "accuracy"
    RULES = ("video_r1", "exact")

    def __init__(
        self,
        tolerance: float = DEFAULT_TOLERANCE,
        rule: str = "video_r1",
        weight: float = 1.0,
        name: str | None = None,
    ):
        super().__init__(weight, name)
        if rule not in self.RULES:
            raise ValueError(f"AccuracyReward: rule must be one of {self.RULES}, got {rule!r}")
        self.tolerance = _check_tolerance(tolerance)
        self.rule = rule

    def score(
        self, completions: list[str], answers: list[str], context: RewardContext
    ) -> list[float]:
        """One score per completion."""
        if self.rule == "video_r1":
            return completion_scores(completions, answers, context)
        correct = completion_correctness(completions, answers, context, self.tolerance)
        return [float(ok) for ok in correct]


class FormatReward(Reward):
    """1.0 when the completion is ``<think>...</think>`` then ``<answer>...</answer>``, else 0."""

    default_name = "format"

    def score(
        self, completions: list[str], answers: list[str], context: RewardContext
    ) -> list[float]:
        """One score per completion."""
        return [
            float(isinstance(completion, str) and _FORMAT.match(completion) is not None)
            for completion in completions
        ]


def retention_ratio(a_student: float, a_teacher: float, eta_max: float | None = None) -> float:
    """C-GRPO's eta = a_student / a_teacher, the share of the teacher's accuracy retained.

    When the teacher never answers correctly (a_teacher = 0) the ratio is undefined; a
    student that answers correctly at least once then retains everything the teacher has,
    so eta := 1.0, and eta := 0.0 when the student never does either. Without ``eta_max``
    (the paper's setting) eta may exceed 1 when the student beats the teacher.
    """
    for label, value in (("a_student", a_student), ("a_teacher", a_teacher)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{label} must be an accuracy in [0, 1], got {value}")
    if a_teacher > 0.0:
        eta = a_student / a_teacher
    else:
        eta = 1.0 if a_student > 0.0 else 0.0
    return eta if eta_max is None else min(eta, eta_max)


class RetentionReward(Reward):
    """C-GRPO's ``1[correct_i] * alpha * max(0, eta - tau)``, eta from the group's accuracy.

    a_student is the group's mean accuracy (Video-R1's graded accuracy,
    :func:`completion_scores`: the fraction correct for multiple choice and numerical
    questions); a_teacher comes from ``context.a_teacher``, measured the same way. A
    completion counts as correct when its accuracy exceeds 0.1, as Video-R1 selects the
    correct completions for its own bonuses. Rows whose ``context.data_type`` is not in
    ``applies_to`` (image rows, by default) get 0 and need no a_teacher.
    """

    default_name = "retention"

    def __init__(
        self,
        alpha: float = 1.0,
        tau: float = 0.6,
        eta_max: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        weight: float = 1.0,
        name: str | None = None,
        applies_to: tuple[str, ...] = ("video",),
    ):
        super().__init__(weight, name)
        self.applies_to = tuple(applies_to)
        if not math.isfinite(alpha) or not math.isfinite(tau):
            raise ValueError(f"RetentionReward: alpha and tau must be finite, got {alpha}, {tau}")
        if eta_max is not None and not eta_max > 0:
            raise ValueError(f"RetentionReward: eta_max must be positive or None, got {eta_max}")
        self.alpha = float(alpha)
        self.tau = float(tau)
        self.eta_max = eta_max
        self.tolerance = _check_tolerance(tolerance)

    def score(
        self, completions: list[str], answers: list[str], context: RewardContext
    ) -> list[float]:
        """One score per completion."""
        if context.data_type not in self.applies_to:
            return [0.0] * len(completions)
        if context.a_teacher is None:
            raise ValueError(
                "RetentionReward needs context.a_teacher, the teacher's accuracy on this "
                "question with the full video (TeacherCallback supplies it)"
            )
        if not completions:
            return []
        scores = completion_scores(completions, answers, context)
        a_student = sum(scores) / len(scores)
        eta = retention_ratio(a_student, float(context.a_teacher), self.eta_max)
        r_c = self.alpha * max(0.0, eta - self.tau)
        return [r_c if score > CORRECT_ABOVE else 0.0 for score in scores]


class CombinedReward:
    """Weighted sum of rewards: ``(total [G], {name: weighted component [G]})``."""

    def __init__(self, rewards: list[Reward]):
        if not rewards:
            raise ValueError("CombinedReward needs at least one reward")
        names = [reward.name for reward in rewards]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"CombinedReward: reward names must be unique for logging, repeated: "
                f"{duplicates}; pass name= to tell them apart"
            )
        self.rewards = list(rewards)

    @property
    def names(self) -> list[str]:
        """Names of the component rewards, in order."""
        return [reward.name for reward in self.rewards]

    def __call__(
        self, completions: list[str], answers: list[str], context: RewardContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        components = {
            reward.name: reward.weight * reward(completions, answers, context)
            for reward in self.rewards
        }
        total = torch.stack(list(components.values())).sum(dim=0)
        return total, components

    def __repr__(self) -> str:
        return f"CombinedReward({self.rewards!r})"


def _check_tolerance(tolerance: float) -> float:
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    return float(tolerance)
