"""Video-R1 style annotations: load JSON arrays or JSONL, validate every row, resolve paths.

A row needs ``problem``, ``problem_type`` (one of Video-R1's five, compared exactly),
``solution`` (``<answer>…</answer>``) and ``path`` (its video, or its
picture for ``data_type: image`` rows; inside the data root once resolved, symlinks
followed); a multiple-choice row needs two or more ``"X. text"``
``options`` and a solution that names one of them. Everything else (``problem_id``,
``process``, ``data_source``, the synthetic ground truth such as ``events``) is kept as it
is. Errors name ``file:line`` and the bad field; with ``on_error="skip"`` a bad row (an
invalid JSONL line included) is skipped and counted instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from marc.rl.answers import normalise_choice, option_letter, split_option

log = logging.getLogger(__name__)

MULTIPLE_CHOICE = "multiple choice"
DATA_TYPES = ("video", "image")
KNOWN_PROBLEM_TYPES = (MULTIPLE_CHOICE, "numerical", "regression", "free-form", "OCR")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class AnnotationError(ValueError):
    """A malformed annotation file or row; the message starts with ``file:line``."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class Annotation:
    """One validated question about one video."""

    problem_id: str
    problem: str
    problem_type: str
    solution: str
    answer: str
    video_path: Path  # the video file, or the picture of an image row
    video_key: str = ""  # the video's path relative to the data root (posix)
    options: list[str] = field(default_factory=list)
    data_type: str = "video"
    source: str = ""  # "file:line" the row came from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def video_id(self) -> str:
        """Identifier of the video: the ``video_id`` field when present, else its path
        relative to the data root (never the bare file name: ``a/x.mp4`` and ``b/x.mp4`` are
        two videos). It keys the clip memory."""
        return str(self.extra.get("video_id") or self.video_key or self.video_path.as_posix())

    @property
    def question_kind(self) -> str:
        """Kind of question (synthetic ground truth) or the problem type for real data."""
        return str(self.extra.get("question_kind") or self.problem_type)


def extract_solution_answer(solution: str) -> str | None:
    """Text inside the last ``<answer>…</answer>`` of a solution, or None."""
    found = _ANSWER.findall(solution)
    return found[-1].strip() if found else None


def _iter_json_array(text: str, path: Path):
    """Yield (line, row) for each element of a top-level JSON array, with its line number.

    A syntax error ends the file: a JSON array cannot be read past it, so it raises even
    when bad rows are skipped (a JSONL file skips the bad line and reads on).
    """
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text):
            raise AnnotationError(path, text.count("\n") + 1, "unterminated JSON array")
        if text[index] == "]":
            return
        line = text.count("\n", 0, index) + 1
        try:
            row, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise AnnotationError(
                path,
                exc.lineno,
                f"invalid JSON ({exc.msg}); a JSON array cannot be read past a syntax error, "
                "so this stops the run even with on_bad_sample=skip (JSONL files skip the line)",
            ) from exc
        yield line, row


def _iter_rows(path: Path):
    """Yield (line, row) pairs from a JSON array file or a JSONL file.

    A JSONL line that is not valid JSON is yielded as its :class:`AnnotationError`, for the
    caller to raise or skip like any other bad row.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, None, f"not UTF-8 text ({exc})") from exc
    if text.lstrip().startswith("["):
        yield from _iter_json_array(text, path)
        return
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_number, AnnotationError(path, line_number, f"invalid JSON ({exc.msg})")


# ------------------------------------------------------------------------ row checks
# One small function per field, so another kind of row (images) adds its own checks.


def _require_object(row: Any, path: Path, line: int) -> dict:
    if isinstance(row, AnnotationError):
        raise row
    if not isinstance(row, dict):
        raise AnnotationError(path, line, f"row must be a JSON object, got {type(row).__name__}")
    return row


def _require_str(row: dict, name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if value is None:
        raise AnnotationError(path, line, f"missing field '{name}'")
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(path, line, f"field '{name}' must be a non-empty string")
    return value


def _problem_type(row: dict, path: Path, line: int) -> str:
    """Video-R1's problem types, compared exactly ("Multiple Choice" is not one of them)."""
    value = _require_str(row, "problem_type", path, line)
    if value not in KNOWN_PROBLEM_TYPES:
        known = ", ".join(repr(t) for t in KNOWN_PROBLEM_TYPES)
        raise AnnotationError(
            path,
            line,
            f"field 'problem_type' is {value!r}; expected one of {known} (compared exactly)",
        )
    return value


def _data_type(row: dict, path: Path, line: int) -> str:
    """The row's ``data_type``: ``video`` (the default) or ``image`` (Video-R1's picture rows,
    read as one-frame videos)."""
    data_type = row.get("data_type", "video")
    if data_type not in DATA_TYPES:
        raise AnnotationError(
            path, line, f"field 'data_type' is {data_type!r}; expected one of {list(DATA_TYPES)}"
        )
    return data_type


def _solution_answer(solution: str, path: Path, line: int) -> str:
    answer = extract_solution_answer(solution)
    if not answer:
        raise AnnotationError(path, line, "field 'solution' has no <answer>…</answer>")
    return answer


def _options(row: dict, problem_type: str, path: Path, line: int) -> list[str]:
    """The options; a multiple-choice question needs two or more "X. text" with distinct X."""
    options = row.get("options", [])
    if options is None:
        options = []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise AnnotationError(path, line, "field 'options' must be a list of strings")
    if problem_type != MULTIPLE_CHOICE:
        return list(options)
    letters = []
    for option in options:
        parts = split_option(option)
        if parts is None or not parts[1]:
            raise AnnotationError(
                path, line, f"field 'options': {option!r} is not of the form 'X. text'"
            )
        if parts[0] in letters:
            raise AnnotationError(path, line, f"field 'options' has the letter {parts[0]} twice")
        letters.append(parts[0])
    if len(options) < 2:
        raise AnnotationError(path, line, "field 'options' needs at least two choices")
    return list(options)


def _check_answer_is_an_option(
    answer: str, options: list[str], problem_type: str, path: Path, line: int
) -> None:
    """A multiple-choice solution names one of the options, by letter or by its text."""
    if problem_type != MULTIPLE_CHOICE:
        return
    letters = [split_option(o)[0] for o in options]
    letter = normalise_choice(answer) or option_letter(answer, options)
    if letter not in letters:
        raise AnnotationError(
            path,
            line,
            f"field 'solution' answers {answer!r}, which is not one of the options "
            f"({', '.join(letters)})",
        )


def _video_path(row: dict, root: Path, path: Path, line: int) -> Path:
    """The video's resolved path, which must lie inside the data root (symlinks followed)."""
    video = _require_str(row, "path", path, line)
    resolved = (root / video).resolve()  # an absolute ``video`` replaces ``root``
    if not resolved.is_relative_to(root):
        raise AnnotationError(
            path,
            line,
            f"field 'path' {video!r} resolves to {resolved}, outside the data root {root} "
            "(set data.data_root to a folder that holds every video)",
        )
    return resolved


def parse_row(row: Any, path: Path, line: int, root: Path) -> Annotation:
    """Validate one raw row and turn it into an :class:`Annotation`.

    ``root`` is the data root, already resolved (``Path.resolve``).
    """
    row = _require_object(row, path, line)
    problem = _require_str(row, "problem", path, line)
    problem_type = _problem_type(row, path, line)
    solution = _require_str(row, "solution", path, line)
    data_type = _data_type(row, path, line)
    answer = _solution_answer(solution, path, line)
    options = _options(row, problem_type, path, line)
    _check_answer_is_an_option(answer, options, problem_type, path, line)
    video_path = _video_path(row, root, path, line)
    problem_id = row.get("problem_id")
    known = {"problem", "problem_type", "solution", "data_type", "options", "path", "problem_id"}
    return Annotation(
        problem_id=str(problem_id) if problem_id is not None else f"{path.name}:{line}",
        problem=problem,
        problem_type=problem_type,
        solution=solution,
        answer=answer,
        video_path=video_path,
        video_key=video_path.relative_to(root).as_posix(),
        options=options,
        data_type=data_type,
        source=f"{path}:{line}",
        extra={k: v for k, v in row.items() if k not in known},
    )


def read_annotations(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> tuple[list[Annotation], list[str]]:
    """Like :func:`load_annotations`, also returning the messages of skipped rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = (Path(data_root) if data_root is not None else path.parent).resolve()
    rows: list[Annotation] = []
    skipped: list[str] = []
    for line, raw in _iter_rows(path):
        try:
            rows.append(parse_row(raw, path, line, root))
        except AnnotationError as exc:
            if on_error == "raise":
                raise
            skipped.append(str(exc))
    if skipped:
        log.warning("skipped %d malformed rows of %s; first: %s", len(skipped), path, skipped[0])
    if not rows:
        raise AnnotationError(path, None, "no valid rows")
    return rows, skipped


def load_annotations(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> list[Annotation]:
    """Read and validate a Video-R1 JSON array or JSONL file.

    Video paths resolve against ``data_root`` when given, else the annotation file's
    folder, and must stay inside it. With ``on_error="skip"`` malformed rows (invalid JSONL
    lines included) are skipped, counted and logged; a syntax error in a JSON array still
    raises, since nothing after it can be read.
    """
    return read_annotations(path, data_root, on_error)[0]
