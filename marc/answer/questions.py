"""A question about a video, checked before any model runs, and question files read row by row.

Bad input raises :class:`BadInput`, whose message is one line naming the file or field:
``marc ask`` prints it and exits with code 2, ``main.py predict`` marks the row failed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from marc.data.annotations import MULTIPLE_CHOICE
from marc.data.prompts import format_question
from marc.data.video import VideoDecodeError, video_info
from marc.rl.answers import split_option

FREE_FORM = "free-form"


class BadInput(ValueError):
    """A question, option, video path or folder a user gave that cannot be answered."""


@dataclass
class Question:
    """One question about one video file (``solution`` optional, ``<answer>X</answer>``)."""

    problem_id: str
    video: Path
    problem: str
    options: list[str] = field(default_factory=list)
    problem_type: str = FREE_FORM
    solution: str | None = None

    @property
    def prompt(self) -> str:
        """The text the model reads (the question with its options, Video-R1 style)."""
        return format_question(self.problem, self.options, self.problem_type)


def check_options(options: list[str] | None, where: str = "options") -> list[str]:
    """Options as given, each ``"X. text"`` with distinct letters; else :class:`BadInput`."""
    options = list(options or [])
    letters = set()
    for index, option in enumerate(options):
        parts = split_option(option) if isinstance(option, str) else None
        if not parts or not parts[1]:
            raise BadInput(f'{where}[{index}] is {option!r}, not "X. text" (e.g. "A. red")')
        if parts[0] in letters:
            raise BadInput(f"{where}[{index}] repeats the letter {parts[0]}")
        letters.add(parts[0])
    if len(options) == 1:
        raise BadInput(f"{where} has one option; give two or more, or none")
    return options


def make_question(
    video: str | os.PathLike,
    problem: str,
    options: list[str] | None = None,
    problem_id: str = "q0",
    solution: str | None = None,
    problem_type: str | None = None,
    where: str = "",
) -> Question:
    """A checked :class:`Question`; ``where`` prefixes field names (``questions.jsonl:3: ``)."""
    if not isinstance(problem, str) or not problem.strip():
        raise BadInput(f"{where}question is empty")
    options = check_options(options, f"{where}options")
    path = Path(video)
    if not path.is_file():
        raise BadInput(f"{where}video not found: {path}")
    try:
        video_info(path)  # opens the container only: a file that is no video fails here
    except VideoDecodeError as error:
        raise BadInput(f"{where}{error}") from error
    kind = problem_type or (MULTIPLE_CHOICE if options else FREE_FORM)
    return Question(str(problem_id), path, problem.strip(), options, kind, solution)


def question_from_row(row: object, data_root: Path, line: str) -> Question:
    """A Video-R1-schema row (``problem``, ``path``, optional ``options``, ``solution``,
    ``problem_type``, ``problem_id``) as a checked question; ``line`` is ``file:N``."""
    where = f"{line}: "
    if not isinstance(row, dict):
        raise BadInput(f"{where}expected a JSON object, got {type(row).__name__}")
    if not isinstance(row.get("path"), str) or not row["path"]:
        raise BadInput(f"{where}field 'path' is missing")
    path = Path(row["path"])
    path = path if path.is_absolute() else data_root / path
    return make_question(
        path,
        row.get("problem", ""),
        row.get("options"),
        problem_id=str(row.get("problem_id", line)),
        solution=row.get("solution"),
        problem_type=row.get("problem_type"),
        where=where,
    )


def read_rows(path: Path) -> list[tuple[str, object]]:
    """``(file:line, row)`` for every non-blank line of a JSONL file (or item of a JSON
    array); a line that is not JSON becomes a :class:`BadInput` in place of its row."""
    if not path.is_file():
        raise FileNotFoundError(f"data.predict_file names a missing file: {path}")
    text = path.read_text()
    if text.lstrip().startswith("["):
        return [(f"{path}:{i + 1}", row) for i, row in enumerate(json.loads(text))]
    rows: list[tuple[str, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as error:
            rows.append((f"{path}:{number}", BadInput(f"{path}:{number}: not JSON ({error})")))
    return rows
