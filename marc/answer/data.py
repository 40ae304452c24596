"""PredictionDataModule: the questions ``main.py predict`` answers, one per batch.

Questions come from a file (``predict_file``: Video-R1-schema rows, JSONL or a JSON array,
``solution`` optional, relative ``path`` resolved against ``data_root``) or from the
command line (``videos`` and ``questions``, one video per question or one for all, and
``options`` the same). Rows are checked here, one at a time: a bad row reaches the module
as its :class:`~marc.answer.questions.BadInput`, so it is marked failed and the others are
answered. Decoding happens in the answerer (which skips it for videos already in the clip
memory), so the loader yields checked questions, not frames.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from marc.answer.questions import BadInput, make_question, question_from_row, read_rows
from marc.data.datamodule import VideoQADataModule


def _one(batch: list) -> list:
    return batch


class PredictionDataModule(VideoQADataModule):
    """Questions about a user's videos for ``trainer.predict`` (see the module docstring).

    Args:
        predict_file: a JSONL (or JSON array) of Video-R1-schema rows.
        videos / questions / options: the same from the command line (``options`` is a
            list of option lists, one per question, or one list for all).
        data_root: what relative ``path`` entries resolve against.
        fps / max_frames / frame_size: decoding, as in ``VideoQADataModule`` (frame_size
            None: the size the model was trained on).
    """

    def __init__(
        self,
        predict_file: str | None = None,
        videos: list[str] | None = None,
        questions: list[str] | None = None,
        options: list[list[str]] | None = None,
        data_root: str = ".",
        fps: float | None = None,
        max_frames: int | None = 64,
        frame_size: int | None = None,
    ):
        super().__init__(data_root=data_root, fps=fps, max_frames=max_frames, frame_size=frame_size)
        self.predict_file = Path(predict_file) if predict_file else None
        self.videos = list(videos or [])
        self.questions = list(questions or [])
        self.options = options
        if self.questions and len(self.videos) not in (1, len(self.questions)):
            raise ValueError(
                f"data.videos has {len(self.videos)} entries for {len(self.questions)} "
                "data.questions: give one video per question, or one for all"
            )

    def prepare_data(self) -> None:
        """Nothing to generate: the questions are the user's."""

    def setup(self, stage: str | None = None) -> None:
        """Nothing to load before :meth:`items`."""

    def items(self) -> list:
        """One checked :class:`Question` or :class:`BadInput` per question, in order."""
        if (self.predict_file is None) == (not self.questions):
            raise ValueError("give data.predict_file, or data.videos and data.questions")
        if self.predict_file is not None:
            items = []
            for line, row in read_rows(self.predict_file):
                if isinstance(row, BadInput):
                    items.append((line, row))
                    continue
                try:
                    items.append(question_from_row(row, self.data_root, line))
                except BadInput as error:
                    pid = row.get("problem_id", line) if isinstance(row, dict) else line
                    items.append((str(pid), error))
            return items
        items = []
        for index, problem in enumerate(self.questions):
            video = self.videos[0] if len(self.videos) == 1 else self.videos[index]
            options = None
            if self.options:
                options = self.options[0] if len(self.options) == 1 else self.options[index]
            pid = f"q{index}"
            try:
                items.append(make_question(video, problem, options, problem_id=pid,
                                           where=f"question {pid}: "))  # fmt: skip
            except BadInput as error:
                items.append((pid, error))
        return items

    def on_after_batch_transfer(self, batch: list, dataloader_idx: int) -> list:
        return batch  # questions, not samples: nothing skipped to count

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.items(), batch_size=1, shuffle=False, collate_fn=_one)
