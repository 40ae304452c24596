"""How a question and its options are written into the text the VLM reads."""

from __future__ import annotations

from marc.data.annotations import MULTIPLE_CHOICE


def format_question(problem: str, options: list[str], problem_type: str) -> str:
    """The question text with its options, as shown to the model (Video-R1 style)."""
    if problem_type == MULTIPLE_CHOICE and options:
        return f"{problem} Options: {' '.join(options)}"
    return problem


def reference_completion(reasoning: str, answer: str) -> str:
    """A well-formed completion ``<think>…</think> <answer>…</answer>`` (SFT target)."""
    return f"<think> {reasoning} </think> <answer> {answer} </answer>"
