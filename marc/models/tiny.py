"""Qwen2.5-VL configurations: small test sizes and the exact 3B architecture.

The embedded default trains a small Qwen2.5-VL from scratch; its config here takes the
control-token ids of the word-level tokenizer (``marc.vocabulary.build_tiny_tokenizer``).
"""

from __future__ import annotations

from transformers import Qwen2_5_VLConfig

from marc.vocabulary import (
    IM_END,
    IMAGE_PAD,
    PAD_TOKEN,
    TINY_TOKEN_IDS,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
)


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim / 2 rotary frequencies over (t, h, w) like Qwen's [16, 24, 24] of 64."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def tiny_qwen2_5_vl_config(
    vocab_size: int,
    *,
    hidden_size: int = 128,
    num_hidden_layers: int = 2,
    # Eight heads of 16, each with its own key/value head: trained on the embedded default,
    # the teacher's reasoning named the right answer more often than with 4 heads sharing
    # 2 key/value heads (README, Results; benchmarks/letter_lookup.py --heads / --kv-heads
    # compares the option lookup alone).
    num_attention_heads: int = 8,
    num_key_value_heads: int = 8,
    intermediate_size: int = 256,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    vision_num_heads: int = 4,
    vision_intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
    tokens_per_second: int = 2,
    initializer_range: float = 0.02,
    video_token_id: int = TINY_TOKEN_IDS[VIDEO_PAD],
    image_token_id: int = TINY_TOKEN_IDS[IMAGE_PAD],
    vision_start_token_id: int = TINY_TOKEN_IDS[VISION_START],
    vision_end_token_id: int = TINY_TOKEN_IDS[VISION_END],
    eos_token_id: int = TINY_TOKEN_IDS[IM_END],
    pad_token_id: int = TINY_TOKEN_IDS[PAD_TOKEN],
    tie_word_embeddings: bool = True,
) -> Qwen2_5_VLConfig:
    """A small Qwen2.5-VL config (random init in seconds); its token ids fit the tiny tokenizer."""
    head_dim = hidden_size // num_attention_heads
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "initializer_range": initializer_range,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": _mrope_section(head_dim),
        },
        "bos_token_id": None,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }
    vision_config = {
        "depth": vision_depth,
        "hidden_size": vision_hidden_size,
        "intermediate_size": vision_intermediate_size,
        "num_heads": vision_num_heads,
        "out_hidden_size": hidden_size,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "spatial_merge_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [vision_depth - 1],
        "tokens_per_second": tokens_per_second,
        "initializer_range": initializer_range,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        video_token_id=video_token_id,
        image_token_id=image_token_id,
        vision_start_token_id=vision_start_token_id,
        vision_end_token_id=vision_end_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )


def qwen2_5_vl_3b_config() -> Qwen2_5_VLConfig:
    """The exact architecture of Qwen/Qwen2.5-VL-3B-Instruct (its config.json, written out)."""
    text_config = {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": [16, 24, 24],
        },
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "use_cache": True,
    }
    vision_config = {
        "depth": 32,
        "hidden_size": 1280,
        "hidden_act": "silu",
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "initializer_range": 0.02,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )
