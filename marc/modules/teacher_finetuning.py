"""TeacherFinetuning: train the full-video teacher (all frames, no compression).

``configs/teacher.yaml``. Supervised fine-tuning (``SupervisedFinetuning``) with the
``Identity`` compressor on the whole video: what the later stages distil from. The student
stages (``CompressorWarmup``, ``CGRPODistillation``) start from its export.
"""

from __future__ import annotations

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from marc.compression import Identity
from marc.modules.sft import SupervisedFinetuning


class TeacherFinetuning(SupervisedFinetuning):
    """SFT of the teacher on all frames; see ``VideoVLMStage`` for the arguments.

    The compressor (``Identity``), budget and input (the full video, never the retriever's)
    are fixed: that is what makes it the teacher.
    """

    def __init__(
        self,
        architecture: str = "tiny",
        init_from: str | None = None,
        model_overrides: dict | None = None,
        torch_dtype: str | None = None,
        max_new_tokens: int = 48,
        answer_with: str = "letter",
        export_dir: str | None = None,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        seed: int = 0,
        max_nonfinite_steps: int = 3,
    ):
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
            export_dir=export_dir,
            gradient_checkpointing=gradient_checkpointing,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            seed=seed,
            max_nonfinite_steps=max_nonfinite_steps,
        )
