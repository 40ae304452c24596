"""Video VLM adapter over transformers' Qwen2.5-VL and its configurations."""

from marc.models.tiny import qwen2_5_vl_3b_config, tiny_qwen2_5_vl_config
from marc.models.vlm import CompletionLogProbs, GenerationOutput, VideoVLM

__all__ = [
    "CompletionLogProbs",
    "GenerationOutput",
    "VideoVLM",
    "qwen2_5_vl_3b_config",
    "tiny_qwen2_5_vl_config",
]
