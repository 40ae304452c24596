"""How a question and its options are written into the text the VLM reads."""

from __future__ import annotations

from marc.data.annotations import MULTIPLE_CHOICE
from marc.rl.answers import normalise_choice, split_option


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
    for parts in map(split_option, options or []):
        if letter is not None and parts and parts[0] == letter and parts[1]:
            return parts[1]
    return None
