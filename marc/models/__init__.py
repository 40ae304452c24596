"""Video VLM adapter over transformers' Qwen2.5-VL, its configs and the tiny tokenizer."""

from marc.models.tiny import (
    QWEN2_5_VL_TOKEN_IDS,
    build_tiny_tokenizer,
    qwen2_5_vl_3b_config,
    tiny_qwen2_5_vl_config,
)
from marc.models.vlm import CompletionLogProbs, GenerationOutput, VideoVLM

__all__ = [
    "QWEN2_5_VL_TOKEN_IDS",
    "CompletionLogProbs",
    "GenerationOutput",
    "VideoVLM",
    "build_tiny_tokenizer",
    "qwen2_5_vl_3b_config",
    "tiny_qwen2_5_vl_config",
]
