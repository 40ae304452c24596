"""CompressorWarmup: warm the student by supervised fine-tuning under the compressor.

``configs/warmup.yaml``: MARC's ``MemoryAwareMerge`` at a one-frame budget on the retrieved
clips, initialised from the teacher. The loss is ``SupervisedFinetuning``'s cross-entropy
plus an optional distillation term: KL from the teacher's next-token distribution on the full
video to the student's on its compressed input, over the completion tokens. The teacher
comes from ``callbacks.teacher.TeacherCallback`` and is never a submodule of this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from marc.models.vlm import CompletionLogProbs
from marc.modules.sft import SupervisedFinetuning


class CompressorWarmup(SupervisedFinetuning):
    """SFT of the student under an injected compressor, with optional distillation.

    Args:
        distill_weight: weight of the KL-to-teacher term (0 turns it off; then no teacher
            is needed).
        distill_temperature: softmax temperature of both distributions in that term.
        **kwargs: see ``VideoVLMStage``.
    """

    def __init__(
        self, *args, distill_weight: float = 0.0, distill_temperature: float = 1.0, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters("distill_weight", "distill_temperature")
        self.teacher_source = None  # set by TeacherCallback.setup

    @property
    def needs_logits(self) -> bool:
        return self.hparams.distill_weight > 0

    def extra_losses(
        self, batch: dict, targets: list[str], student: CompletionLogProbs
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """The distillation term ``distill_kl`` when ``distill_weight > 0``."""
        if not self.needs_logits:
            return {}
        kl = self.distillation_kl(batch, targets, student.logits, student.mask.float())
        return {"distill_kl": (self.hparams.distill_weight, kl)}

    def distillation_kl(
        self, batch: dict, targets: list[str], student_logits: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """KL(teacher || student) per completion token, averaged over the mask."""
        if self.teacher_source is None:
            raise RuntimeError(
                "distill_weight > 0 needs a teacher: add callbacks.teacher.TeacherCallback "
                "to trainer.callbacks"
            )
        teacher_logits = self.teacher_source.completion_logits(batch, targets).to(student_logits)
        t = self.hparams.distill_temperature
        teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
        student = F.log_softmax(student_logits.float() / t, dim=-1)
        per_token = (teacher.exp() * (teacher - student)).sum(-1) * t * t
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
