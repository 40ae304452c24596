"""CompressorWarmup: supervised fine-tuning of a VideoVLM under a compressor.

Trains the teacher (``Identity`` compressor, all frames: ``configs/teacher.yaml``) and warms
the student (``MemoryAwareMerge`` at a one-frame budget, initialised from the teacher:
``configs/warmup.yaml``). The loss is cross-entropy on completion tokens only, plus an
optional distillation term: KL from the teacher's next-token distribution on the full video
to the student's on its compressed input, over the completion tokens. The teacher comes from
``callbacks.teacher.TeacherCallback`` and is never a submodule of this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from marc.modules.vlm_stage import VideoVLMStage


class CompressorWarmup(VideoVLMStage):
    """SFT of a VideoVLM under an injected compressor, with optional distillation.

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

    def training_step(self, batch: dict, batch_idx: int):
        if not batch.get("batch_size"):
            # Every sample was skipped as bad input. A zero loss tied to every parameter
            # keeps DDP's gradient all-reduce in step with the other ranks.
            return sum(p.sum() for p in self.trainable_parameters()) * 0.0
        videos = self.compress_videos(self.input_videos(batch))
        targets = self.sft_targets(batch)
        student = self.vlm.completion_logprobs(
            videos, batch["prompt"], targets, return_logits=self.hparams.distill_weight > 0
        )
        mask = student.mask.float()
        ce = -(student.logprobs * mask).sum() / mask.sum().clamp(min=1)
        loss = ce
        size = batch["batch_size"]
        if self.hparams.distill_weight > 0:
            kl = self.distillation_kl(batch, targets, student.logits, mask)
            loss = ce + self.hparams.distill_weight * kl
            self.log("train/distill_kl", kl, batch_size=size)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step} "
                f"(questions {batch['problem_id']})"
            )
        self.log("train/ce", ce, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/visual_tokens", sum(v.num_tokens for v in videos) / size, batch_size=size)
        return loss

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
