"""The small and 3B Qwen2.5-VL configs and the word-level tokenizer of the embedded default."""

from __future__ import annotations

import pytest

from marc.models.tiny import qwen2_5_vl_3b_config, tiny_qwen2_5_vl_config
from marc.vocabulary import (
    LETTERS,
    TINY_TOKEN_IDS,
    build_tiny_tokenizer,
    tokenize_words,
    vocabulary,
)

from .conftest import COMPLETION


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        COMPLETION,
        "<think>a red circle moves left</think><answer>B</answer>",
        "<think> the black plain background comes right after </think>\n<answer> D </answer>",
    ],
)
def test_completion_round_trip(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    decoded = tokenizer.decode(ids)
    assert decoded.split() == text.replace("<", " <").replace(">", "> ").split()
    assert tokenizer(decoded, add_special_tokens=False)["input_ids"] == ids


def test_words_match_dataset_splitter(tokenizer):
    question = "What colour is the circle in the event with the black plain background?"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(question)["input_ids"])
    # The tokenizer lower-cases every word except the answer letters A-D.
    assert tokens == [w if w in LETTERS else w.lower() for w in tokenize_words(question)]
    assert tokenizer.unk_token_id not in tokenizer(" ".join(vocabulary()))["input_ids"]


def test_letters_keep_case_and_digits_split(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("A. a red (12) Cross")["input_ids"])
    assert tokens == ["A", ".", "a", "red", "(", "1", "2", ")", "cross"]


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<pad>"
    for token, index in TINY_TOKEN_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == index
    text = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>how many<|im_end|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[:5] == [
        "<|im_start|>", "user", "\n", "<|vision_start|>", "<|video_pad|>"
    ]  # fmt: skip
    # Control tokens vanish when skipped, reasoning tags stay.
    assert tokenizer.decode(
        tokenizer("<think> up </think><|im_end|>")["input_ids"], skip_special_tokens=True
    ) == ("<think> up </think>")


def test_tiny_config_matches_tokenizer(tokenizer):
    config = tiny_qwen2_5_vl_config(len(tokenizer))
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert text.eos_token_id == tokenizer.eos_token_id
    vision = config.vision_config
    assert all(0 <= i < vision.depth for i in vision.fullatt_block_indexes)
    assert vision.out_hidden_size == text.hidden_size


def test_3b_config_is_the_published_architecture():
    config = qwen2_5_vl_3b_config()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (2048, 36, 11008)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (16, 2, 151936)
    assert text.rope_parameters["rope_theta"] == 1e6
    assert text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (vision.depth, vision.hidden_size, vision.num_heads) == (32, 1280, 16)
    assert (vision.intermediate_size, vision.out_hidden_size, vision.window_size) == (
        3420,
        2048,
        112,
    )
    assert list(vision.fullatt_block_indexes) == [7, 15, 23, 31]
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (14, 2, 2)
    assert vision.tokens_per_second == 2
    assert config.tie_word_embeddings
    assert (config.video_token_id, config.image_token_id) == (151656, 151655)
