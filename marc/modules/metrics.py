"""Accuracy overall and per question kind, with the counts of questions scored and skipped, as
a torchmetrics Metric (syncs across ranks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from marc.vocabulary import QUESTION_KINDS


class AccuracyByKind(Metric):
    """Fraction of correct answers, overall and for each question kind.

    Kinds are fixed at construction so the state has the same shape on every rank; a kind
    not in the list is counted under ``other``. Questions skipped as bad input (their video
    missing or corrupt) are counted too (:meth:`skip`), so a result says how many it is over.
    """

    full_state_update = False

    def __init__(self, kinds: Sequence[str] = QUESTION_KINDS, **kwargs):
        super().__init__(**kwargs)
        self.kinds = [*kinds, "other"]
        self.add_state("correct", torch.zeros(len(self.kinds)), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(len(self.kinds)), dist_reduce_fx="sum")
        self.add_state("skipped", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, correct: Sequence[bool] | torch.Tensor, kinds: Sequence[str]) -> None:
        """Add one batch of per-question correctness and the questions' kinds."""
        # The state's dtype follows the precision plugin (e.g. bf16-true): match it.
        correct = torch.as_tensor(correct, device=self.correct.device).to(self.correct.dtype)
        index = torch.tensor(
            [self.kinds.index(k) if k in self.kinds else len(self.kinds) - 1 for k in kinds],
            device=self.correct.device,
        )
        self.correct.index_add_(0, index, correct)
        self.total.index_add_(0, index, torch.ones_like(correct))

    def skip(self, count: int) -> None:
        """Count ``count`` questions that could not be scored (skipped as bad input)."""
        self.skipped += count

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"all": acc, kind: acc, ..., "questions": scored, "skipped": skipped}``; kinds
        never seen are left out (an accuracy over zero questions reads 0: check
        ``questions``)."""
        result = {"all": self.correct.sum() / self.total.sum().clamp(min=1)}
        for i, kind in enumerate(self.kinds):
            if self.total[i] > 0:
                result[kind] = self.correct[i] / self.total[i]
        result["questions"] = self.total.sum()
        result["skipped"] = self.skipped.clone()
        return result
