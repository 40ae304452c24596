"""Video-R1 style annotations: load JSON arrays or JSONL, validate every row, resolve paths.

A row needs ``problem``, ``problem_type``, ``solution`` and, for videos, ``path``; multiple
choice rows need a list of ``options``. Everything else (``problem_id``, ``process``,
``data_source``, the synthetic ground truth such as ``events``) is kept as it is. Errors
name ``file:line`` and the bad field.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

MULTIPLE_CHOICE = "multiple choice"
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
    video_path: Path
    options: list[str] = field(default_factory=list)
    data_type: str = "video"
    source: str = ""  # "file:line" the row came from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def video_id(self) -> str:
        """Identifier of the video (``video_id`` field when present, else the file stem)."""
        return str(self.extra.get("video_id") or self.video_path.stem)

    @property
    def question_kind(self) -> str:
        """Kind of question (synthetic ground truth) or the problem type for real data."""
        return str(self.extra.get("question_kind") or self.problem_type)


def extract_solution_answer(solution: str) -> str | None:
    """Text inside the last ``<answer>…</answer>`` of a solution, or None."""
    found = _ANSWER.findall(solution)
    return found[-1].strip() if found else None


def _iter_json_array(text: str, path: Path):
    """Yield (line, row) for each element of a top-level JSON array, with its line number."""
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
            raise AnnotationError(path, exc.lineno, f"invalid JSON ({exc.msg})") from exc
        yield line, row


def _iter_rows(path: Path):
    """Yield (line, row) pairs from a JSON array file or a JSONL file."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        yield from _iter_json_array(text, path)
        return
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(path, line_number, f"invalid JSON ({exc.msg})") from exc


def _require_str(row: dict, name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if value is None:
        raise AnnotationError(path, line, f"missing field '{name}'")
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(path, line, f"field '{name}' must be a non-empty string")
    return value


def parse_row(row: Any, path: Path, line: int, root: Path) -> Annotation:
    """Validate one raw row and turn it into an :class:`Annotation`."""
    if not isinstance(row, dict):
        raise AnnotationError(path, line, f"row must be a JSON object, got {type(row).__name__}")
    problem = _require_str(row, "problem", path, line)
    problem_type = _require_str(row, "problem_type", path, line)
    solution = _require_str(row, "solution", path, line)
    data_type = row.get("data_type", "video")
    if data_type != "video":
        raise AnnotationError(path, line, f"field 'data_type' is {data_type!r}; only 'video' rows")
    answer = extract_solution_answer(solution)
    if answer is None or not answer:
        raise AnnotationError(path, line, "field 'solution' has no <answer>…</answer>")
    options = row.get("options", [])
    if options is None:
        options = []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise AnnotationError(path, line, "field 'options' must be a list of strings")
    if problem_type == MULTIPLE_CHOICE and len(options) < 2:
        raise AnnotationError(path, line, "field 'options' needs at least two choices")
    video = _require_str(row, "path", path, line)
    video_path = Path(video)
    if not video_path.is_absolute():
        video_path = (root / video_path).resolve()
    problem_id = row.get("problem_id")
    known = {"problem", "problem_type", "solution", "data_type", "options", "path", "problem_id"}
    return Annotation(
        problem_id=str(problem_id) if problem_id is not None else f"{path.name}:{line}",
        problem=problem,
        problem_type=problem_type,
        solution=solution,
        answer=answer,
        video_path=video_path,
        options=list(options),
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
    root = Path(data_root) if data_root is not None else path.parent
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

    Relative video paths resolve against ``data_root`` when given, else the annotation
    file's folder. With ``on_error="skip"`` malformed rows are skipped, counted and logged.
    """
    return read_annotations(path, data_root, on_error)[0]
