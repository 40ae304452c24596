"""How a question and its options are written into the text the VLM reads."""

from __future__ import annotations

from marc.data.annotations import MULTIPLE_CHOICE
from marc.rl.answers import normalise_choice


def format_question(problem: str, options: list[str], problem_type: str) -> str:
    """The question text with its options, as shown to the model (Video-R1 style)."""
    if problem_type == MULTIPLE_CHOICE and options:
        return f"{problem} Options: {' '.join(options)}"
    return problem


def reference_completion(reasoning: str, answer: str) -> str:
    """A well-formed completion ``<think>…</think> <answer>…</answer>`` (SFT target)."""
    return f"<think> {reasoning} </think> <answer> {answer} </answer>"


def chosen_option_text(options: list[str] | None, answer: str) -> str | None:
    """The text of the option ``answer`` names (``"B"`` and ``"B. red"`` give ``"red"``)."""
    letter = normalise_choice(answer)
    for option in options or []:
        text = option.partition(".")[2].strip()
        if letter is not None and normalise_choice(option) == letter and text:
            return text
    return None
