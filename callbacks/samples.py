"""SampleCompletionsCallback: sampled completions and their rewards, as TensorBoard text.

Reads the ``last_rollout`` summary a ``CGRPODistillation`` module keeps after each training
step (per question: question, solution, a_teacher and every completion with its reward, its
reward components and its advantage) and writes it as a markdown table with
``add_text`` when the trainer's logger is a ``TensorBoardLogger``; otherwise it does nothing.
"""

from __future__ import annotations

import html

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger


class SampleCompletionsCallback(Callback):
    """Log up to ``max_samples`` questions of the last rollout every ``every_n_steps`` steps."""

    def __init__(self, every_n_steps: int = 50, max_samples: int = 4, tag: str = "samples"):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.max_samples = max_samples
        self.tag = tag
        self._last_logged_step: int | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        summary = getattr(pl_module, "last_rollout", None)
        logger = _tensorboard_logger(trainer)
        if not summary or logger is None or not trainer.is_global_zero:
            return
        step = trainer.global_step
        # global_step grows by num_iterations per batch, so a plain modulo could skip forever.
        if (
            self._last_logged_step is not None
            and step < self._last_logged_step + self.every_n_steps
        ):
            return
        self._last_logged_step = step
        logger.experiment.add_text(self.tag, format_rollout(summary[: self.max_samples]), step)


def format_rollout(summary: list[dict]) -> str:
    """Markdown: per question a header line and a table of completions and rewards."""
    parts = []
    for question in summary:
        completions = question["completions"]
        names = list(completions[0]["components"]) if completions else []
        a_teacher = question.get("a_teacher")
        parts.append(
            f"**{_escape(question['problem_id'])}**: {_escape(question['question'])}  \n"
            f"solution: {_escape(question['solution'])}, a_teacher: "
            + ("n/a" if a_teacher is None else f"{a_teacher:.3f}")
        )
        header = ["completion", "reward", "advantage", *names]
        rows = [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for completion in completions:
            cells = [
                _escape(completion["text"]) or "(empty)",
                f"{completion['reward']:.3f}",
                f"{completion['advantage']:.3f}",
                *(f"{completion['components'][name]:.3f}" for name in names),
            ]
            rows.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def _escape(text: str) -> str:
    # TensorBoard renders markdown with HTML: unescaped <think> tags would vanish.
    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def _tensorboard_logger(trainer: L.Trainer) -> TensorBoardLogger | None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger
    return None
