"""SupervisedFinetuning: cross-entropy on reference completions of a VideoVLM under a compressor.

The base of the two supervised stages: ``TeacherFinetuning`` (all frames, no compression:
``configs/teacher.yaml``) and ``CompressorWarmup`` (the student under MARC's compression:
``configs/warmup.yaml``). The reference completion of a question is its target events'
captions as reasoning, then the answer (``marc.modules.vlm_stage.sft_target``); the loss is
the mean cross-entropy over completion tokens (``marc.models.vlm.completion_cross_entropy``),
plus whatever :meth:`SupervisedFinetuning.extra_losses` adds. A step whose loss is NaN or
infinite is skipped (``StageModule.skip_nonfinite``): it returns a zero loss and the
update is dropped (``StageModule.skipped_step_loss``), on every process at once.
"""

from __future__ import annotations

import torch

from marc.models.vlm import CompletionLogProbs, completion_cross_entropy
from marc.modules.out_of_memory import names_memory_settings
from marc.modules.vlm_stage import VideoVLMStage


class SupervisedFinetuning(VideoVLMStage):
    """SFT of a VideoVLM on reference completions; subclasses may add loss terms."""

    needs_logits = False  # whether extra_losses reads the student's logits

    @names_memory_settings("train")
    def training_step(self, batch: dict, batch_idx: int):
        if not self.has_samples(batch):
            return self.empty_batch_loss()
        videos = self.compressed_inputs(batch)
        targets = self.sft_targets(batch)
        student = self.vlm.completion_logprobs(
            videos, batch["prompt"], targets, return_logits=self.needs_logits
        )
        ce = completion_cross_entropy(student)
        terms = self.extra_losses(batch, targets, student)
        loss = ce + sum(weight * value for weight, value in terms.values())
        if self.skip_nonfinite(loss, f"questions {batch['problem_id']}"):
            return self.skipped_step_loss()
        size = batch["batch_size"]
        for name, (_, value) in terms.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.log("train/ce", ce, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_visual_tokens("train", videos, batch["video"])
        return loss

    def extra_losses(
        self, batch: dict, targets: list[str], student: CompletionLogProbs
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """Further loss terms as ``{name: (weight, value)}`` (none here)."""
        return {}
