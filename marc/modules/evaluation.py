"""VideoQAEvaluation: a VLM with a compressor, budget and optional retrieval, for test runs.

``python main.py test --config configs/eval.yaml`` evaluates one such setting; swap
``--model.compressor``, ``--model.init_from`` or ``--model.use_retrieval`` to compare
settings under the same budget. ``marc.eval.report`` runs the whole comparison table.
"""

from __future__ import annotations

from marc.modules.vlm_stage import VideoVLMStage


class VideoQAEvaluation(VideoVLMStage):
    """Greedy-decoding accuracy (overall and per question kind) and visual-token counts."""

    def training_step(self, batch: dict, batch_idx: int):
        raise RuntimeError("VideoQAEvaluation has no training step: use `main.py test`")

    def configure_optimizers(self):
        return None
