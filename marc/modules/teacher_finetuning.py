"""TeacherFinetuning: train the full-video teacher (all frames, no compression at test time).

``configs/teacher.yaml``. Supervised fine-tuning (``SupervisedFinetuning``) with the
``Identity`` compressor on the whole video: what the later stages distil from. The student
stages (``CompressorWarmup``, ``CGRPODistillation``) start from its export.

A pretrained VLM has seen videos of every length and has a vision encoder that already
perceives; a teacher trained from scratch on the embedded default has neither. Three
training aids, all off by default and none of them part of the exported model, make it
more like one:

- ``clip_prob``: per training question, with this probability only the frames of its
  target events are fed (the clip a retriever would return): short inputs, and a
  curriculum in which the named event need not be searched for;
- ``compression_prob``: per training video, with this probability a training-free
  compressor (drawn from ``compression_choices``) at a budget drawn from
  ``compression_budgets`` shortens the visual tokens, so the teacher also answers from few
  tokens, as a pretrained VLM does when a training-free method compresses its input;
- ``probe_weight``: the weight of ``VisionProbe``'s dense auxiliary loss on the vision
  tower's tokens (what object, which motion, which background in every token).

Every draw comes from a generator seeded by ``(seed, rank, global_step)``, so a resumed run
draws what the uninterrupted one did. Validation and test always see all frames.
"""

from __future__ import annotations

import zlib

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from marc.compression import TRAINING_FREE, Budget, CompressedVideo, Identity, build_compressor
from marc.models.vlm import CompletionLogProbs
from marc.modules.sft import SupervisedFinetuning
from marc.modules.vision_probe import VisionProbe


class TeacherFinetuning(SupervisedFinetuning):
    """SFT of the teacher on all frames; see ``VideoVLMStage`` for the shared arguments.

    The compressor at test time (``Identity``), the budget and the input (the full video,
    never the retriever's) are fixed: that is what makes it the teacher.

    Args:
        clip_prob / compression_prob / compression_budgets / compression_choices /
            probe_weight: the training aids of the module docstring.
    """

    def __init__(
        self,
        architecture: str = "tiny",
        init_from: str | None = None,
        model_overrides: dict | None = None,
        torch_dtype: str | None = None,
        max_new_tokens: int = 48,
        answer_with: str = "letter",
        reasoning: str = "event",
        clip_prob: float = 0.0,
        compression_prob: float = 0.0,
        compression_budgets: list[int] | None = None,
        compression_choices: list[str] | None = None,
        probe_weight: float = 0.0,
        export_dir: str | None = None,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        seed: int = 0,
        max_nonfinite_steps: int = 3,
    ):
        for name, value in (("clip_prob", clip_prob), ("compression_prob", compression_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if probe_weight < 0:
            raise ValueError(f"probe_weight must be at least 0, got {probe_weight}")
        super().__init__(
            compressor=Identity(),
            budget_frames=1,
            use_retrieval=False,
            architecture=architecture,
            init_from=init_from,
            model_overrides=model_overrides,
            torch_dtype=torch_dtype,
            max_new_tokens=max_new_tokens,
            answer_with=answer_with,
            reasoning=reasoning,
            export_dir=export_dir,
            gradient_checkpointing=gradient_checkpointing,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            seed=seed,
            max_nonfinite_steps=max_nonfinite_steps,
        )
        self.clip_prob = clip_prob
        self.compression_prob = compression_prob
        self.compression_budgets = list(compression_budgets or [1, 2, 4, 8])
        if min(self.compression_budgets) < 1:
            raise ValueError(
                f"compression_budgets must be positive, got {self.compression_budgets}"
            )
        self.compression_choices = torch.nn.ModuleList(
            build_compressor(name) for name in (compression_choices or TRAINING_FREE)
        )
        self.probe_weight = probe_weight
        self.probe: VisionProbe | None = None
        self._probe_inputs: tuple[list, list] | None = None
        if self.vlm is not None:
            self._build_probe()

    def configure_model(self) -> None:
        super().configure_model()
        self._build_probe()

    def _build_probe(self) -> None:
        if self.probe_weight > 0 and self.probe is None:
            self.probe = VisionProbe(self.vlm.model.config.vision_config.out_hidden_size)

    # ---------------------------------------------------------------- training inputs
    def _generator(self) -> torch.Generator:
        key = f"{self.hparams.seed}:{self.global_rank}:{self.global_step}"
        return torch.Generator().manual_seed(zlib.crc32(key.encode()))

    def compressed_inputs(self, batch: dict) -> list[CompressedVideo]:
        """All frames outside training; in training, the clips and compression drawn."""
        if not self.training or not (self.clip_prob or self.compression_prob or self.probe):
            return super().compressed_inputs(batch)
        generator = self._generator()
        videos, tokens, targets = [], [], []
        for index, frames in enumerate(batch["video"]):
            start = 0
            spans, named = batch["event_spans"][index], batch["target_events"][index]
            if spans and named and float(torch.rand((), generator=generator)) < self.clip_prob:
                start = min(spans[i][0] for i in named)
                end = max(spans[i][1] for i in named)
                if end > start:
                    frames = frames[start:end]
                else:
                    start = 0
            encoded, grid = self.vlm.encode_video(frames)
            video = CompressedVideo(encoded, grid, 1.0)
            if float(torch.rand((), generator=generator)) < self.compression_prob:
                choice = int(torch.randint(len(self.compression_choices), (), generator=generator))
                frames_kept = self.compression_budgets[
                    int(torch.randint(len(self.compression_budgets), (), generator=generator))
                ]
                video = self.compression_choices[choice](encoded, grid, Budget(frames=frames_kept))
            videos.append(video)
            if self.probe is not None:
                events = (batch.get("events") or [None] * len(batch["video"]))[index]
                tokens.append(encoded)
                targets.append(
                    VisionProbe.targets(events, spans, grid, start, self.vlm.temporal_patch_size)
                )
        self._probe_inputs = (tokens, targets) if self.probe is not None else None
        return videos

    def extra_losses(
        self, batch: dict, targets: list[str], student: CompletionLogProbs
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """The vision probe's loss (``probe``) when ``probe_weight > 0`` and there is truth."""
        if self.probe is None or self._probe_inputs is None:
            return {}
        loss = self.probe.loss(*self._probe_inputs)
        self._probe_inputs = None
        return {} if loss is None else {"probe": (self.probe_weight, loss)}
