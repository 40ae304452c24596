"""VideoPrediction: the LightningModule ``main.py predict --config configs/predict.yaml`` runs.

Each ``predict_step`` answers one question through :class:`~marc.answer.answerer.Answerer`
and appends its line to ``predictions.jsonl`` (:mod:`marc.answer.writer`) at once. A row
that cannot be answered (missing or undecodable video, empty question, bad options) is
written as failed with its reason and the run goes on; a question already in the file is
skipped with ``resume`` (``--resume`` on the command line). At the end the accuracy over
the questions with a ``solution`` is printed.
"""

from __future__ import annotations

import logging

import lightning as L

from marc.answer.answerer import Answerer, load_answerer
from marc.answer.questions import BadInput
from marc.answer.store import DEFAULT_DIR
from marc.answer.writer import PredictionWriter, failed_line
from marc.compression import TokenCompressor
from marc.decoding import VideoDecodeError

log = logging.getLogger(__name__)


class VideoPrediction(L.LightningModule):
    """Answers the predict loader's questions and writes ``predictions.jsonl``.

    Args:
        model_dir: the answering model's folder.
        retriever_dir: the retriever's folder (None: all frames, no retrieval).
        clip_memory_dir: the persistent clip memory (``marc.answer.store``).
        output: where the predictions go.
        resume: keep the lines already in ``output`` and skip their questions.
        compressor / budget_frames: applied to the retrieved clips (None: all tokens).
        max_new_tokens: of the greedy decode.
        cache_tokens: keep the visual tokens of retrieved clips for the run, so questions
            that retrieve the same clips of a video decode and encode nothing.
    """

    def __init__(
        self,
        model_dir: str = "artifacts/cgrpo/model",
        retriever_dir: str | None = "artifacts/retriever",
        clip_memory_dir: str = DEFAULT_DIR,
        output: str = "predictions.jsonl",
        resume: bool = False,
        compressor: TokenCompressor | None = None,
        budget_frames: int | None = 1,
        max_new_tokens: int = 40,
        cache_tokens: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["compressor"])
        self.compressor = compressor
        self.resume = resume
        self.answerer: Answerer | None = None
        self.writer: PredictionWriter | None = None

    def configure_model(self) -> None:
        if self.answerer is not None:
            return
        hp = self.hparams
        data = self.trainer.datamodule.hparams if self.trainer.datamodule is not None else {}
        self.answerer = load_answerer(
            hp.model_dir,
            hp.retriever_dir,
            hp.clip_memory_dir,
            self.compressor,
            hp.budget_frames,
            fps=data.get("fps"),
            max_frames=data.get("max_frames", 64),
            frame_size=data.get("frame_size"),
            max_new_tokens=hp.max_new_tokens,
            cache_tokens=hp.cache_tokens,
        )
        self.vlm = self.answerer.vlm  # a submodule: Lightning moves it to the device

    def on_predict_start(self) -> None:
        self.writer = PredictionWriter(self.hparams.output, resume=self.resume)
        if self.writer.done:
            log.info("resuming: %d questions already answered", len(self.writer.done))

    def predict_step(self, batch: list, batch_idx: int) -> None:
        for item in batch:
            if isinstance(item, tuple):  # (problem_id, BadInput): a row the loader refused
                problem_id, error = item
                if problem_id not in self.writer.done:
                    self.writer.write(failed_line(problem_id, error))
                continue
            if item.problem_id in self.writer.done:
                continue
            try:
                line = self.answerer.answer(item).as_line()
            except (BadInput, VideoDecodeError, FileNotFoundError) as error:
                line = failed_line(item.problem_id, error, str(item.video))
            self.writer.write(line)

    def on_predict_end(self) -> None:
        writer = self.writer
        writer.close()
        failed = sum(line["status"] == "failed" for line in writer.lines)
        summary = f"{len(writer.lines)} predictions in {writer.path} ({failed} failed)"
        accuracy = writer.accuracy()
        if accuracy is not None:
            correct, scored = accuracy
            summary += f"; accuracy {correct / scored:.3f} ({correct} of {scored} with a solution)"
        print(summary, flush=True)
