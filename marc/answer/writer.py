"""``predictions.jsonl``: one line per question, appended and flushed as each is answered.

A run that stops halfway (a crash, ``kill -9``) leaves every line written before it whole;
a last line cut off mid-write is dropped when the file is opened again with ``resume``,
which then skips every question already in the file. Without ``resume`` the file starts
empty. The schema of a line is in docs/CONTRACTS.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def failed_line(problem_id: str, error: BaseException | str, video: str | None = None) -> dict:
    """The line of a question that could not be answered, with the reason."""
    line = {"problem_id": problem_id, "status": "failed", "error": str(error).splitlines()[0]}
    if video is not None:
        line["video"] = video
    return line


class PredictionWriter:
    """Appends prediction lines to ``path``; ``resume`` keeps (and skips) those written."""

    def __init__(self, path: str | os.PathLike, resume: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lines: list[dict] = []
        if resume and self.path.is_file():
            self.lines = self._read_whole_lines()
        else:
            self.path.write_text("")
        self.done = {line["problem_id"] for line in self.lines}
        self._file = open(self.path, "a", encoding="utf-8")

    def _read_whole_lines(self) -> list[dict]:
        """The file's complete lines; a cut-off or damaged line and what follows go."""
        data = self.path.read_bytes()
        lines, good_end, offset = [], 0, 0
        for raw in data.splitlines(keepends=True):
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break  # cut off mid-write
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not isinstance(line, dict) or "problem_id" not in line:
                break
            lines.append(line)
            good_end = offset
        if good_end != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        return lines

    def write(self, line: dict) -> None:
        """Append one line and flush it to disk before returning."""
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.lines.append(line)
        self.done.add(line["problem_id"])

    def close(self) -> None:
        self._file.close()

    def accuracy(self) -> tuple[int, int] | None:
        """(correct, scored) over the answered lines with a solution; None when none has."""
        scored = [line for line in self.lines if "correct" in line]
        if not scored:
            return None
        return sum(bool(line["correct"]) for line in scored), len(scored)
