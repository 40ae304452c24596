"""Video-R1's accuracy reward for each of its problem types, as its training code computes it.

Source: tulerfeng/Video-R1, ``src/r1-v/src/open_r1/grpo.py``, ``accuracy_reward`` (the
reward the Video-R1 GRPO runs, and MARC after it, train with):

- ``multiple choice``: 1 when the answer names the solution's option, else 0. Video-R1
  compares the stripped strings; here the option letters are compared as
  ``marc.rl.answers`` reads them (``"B"``, ``"B."``, ``"(B)"``, ``"B. red"``, or an option's
  exact text given the options): every answer Video-R1 accepts is accepted, and a few
  spellings of the same letter too (the tiny default answers with option texts);
- ``numerical``: 0 when exactly one of answer and solution has a decimal point or comma;
  else 1 when both parse as numbers (commas removed) and are equal rounded to 2 decimals;
- ``OCR``: ``1 - WER`` (word error rate over whitespace-split words, case-sensitive),
  clamped to [0, 1];
- ``free-form``: the mean of the ROUGE-1, ROUGE-2 and ROUGE-L F-measures
  (``rouge_score`` with the Porter stemmer), clamped to [0, 1];
- ``regression``: ``1 - min(1, |answer - solution| / |solution|)`` (both with 1e-9 added);
  a non-finite answer scores 0 (in Video-R1 a NaN answer scores 1, a bug not copied);
- any other type: 1 for an equal normalised text (Video-R1 gives 0; marc keeps its rule).

The answer is the last ``<answer>`` of a completion (Video-R1 reads the first; a
well-formed completion has one). A completion without one scores 0 for every type.
"""

from __future__ import annotations

import math

from marc.rl.answers import (
    answer_from_solution,
    answers_match,
    extract_answer,
    normalise_problem_type,
)

NUMERICAL, REGRESSION, OCR, FREE_FORM = "numerical", "regression", "ocr", "free form"
# Video-R1 marks a completion correct for its bonuses when its accuracy exceeds this
# (trainer/grpo_trainer.py: temporal and length rewards, ``rewards_per_func[:, 0] > 0.1``).
CORRECT_ABOVE = 0.1


def _number(text: str) -> float | None:
    """Video-R1's ``normalize_number``: the text without commas as a float, else None."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference's word count (at least 1)."""
    ref, hyp = reference.split(), hypothesis.split()
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, other in enumerate(hyp, start=1):
            if word == other:
                current.append(previous[j - 1])
            else:
                current.append(1 + min(previous[j], current[j - 1], previous[j - 1]))
        previous = current
    return previous[-1] / max(1, len(ref))


def rouge_f(reference: str, hypothesis: str) -> float:
    """Mean F-measure of ROUGE-1, ROUGE-2 and ROUGE-L with stemming (Video-R1's)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as error:
        raise ImportError(
            "free-form answers are scored with ROUGE as Video-R1 does: pip install 'marc[real]'"
        ) from error
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = scorer.score(reference, hypothesis)
    return (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3


def numerical_score(prediction: str, reference: str) -> float:
    """Video-R1's numerical rule: same decimal notation, equal to 2 decimals."""
    if (("." in reference) or ("," in reference)) != (("." in prediction) or ("," in prediction)):
        return 0.0
    target, value = _number(reference), _number(prediction)
    if target is None or value is None:
        return 0.0
    return float(round(target, 2) == round(value, 2))


def regression_score(prediction: str, reference: str) -> float:
    """Video-R1's regression rule: one minus the relative error, clamped to [0, 1]."""
    target, value = _number(reference), _number(prediction)
    if target is None or value is None or not (math.isfinite(target) and math.isfinite(value)):
        return 0.0
    relative = (abs(value - target) + 1e-9) / (abs(target) + 1e-9)
    return 1.0 - min(1.0, max(0.0, relative))


def video_r1_score(
    completion: str, solution: str, problem_type: str, options: list[str] | None = None
) -> float:
    """Video-R1's accuracy reward of one completion for its question's problem type, [0, 1]."""
    prediction = extract_answer(completion)
    if prediction is None:
        return 0.0
    reference = answer_from_solution(solution)
    kind = normalise_problem_type(problem_type)
    if kind == NUMERICAL:
        return numerical_score(prediction, reference)
    if kind == REGRESSION:
        return regression_score(prediction, reference)
    if kind == OCR:
        return max(0.0, min(1.0, 1.0 - word_error_rate(reference, prediction)))
    if kind == FREE_FORM:
        return max(0.0, min(1.0, rouge_f(reference, prediction)))
    # Multiple choice by letter (and option text); other types by normalised text.
    return float(answers_match(prediction, reference, problem_type, options=options))
