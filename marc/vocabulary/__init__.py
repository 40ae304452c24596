"""The project's words: the embedded default's vocabulary and the two word-level tokenizers.

A leaf package (it imports nothing from marc), so the generator (``marc.data.synthetic``),
the tiny language model (``marc.models.tiny``) and the retriever's query encoder
(``marc.retrieval.encoders``) all read the same words from one place.
"""

from marc.vocabulary.word_tokenizers import (
    IM_END,
    IM_START,
    IMAGE_PAD,
    PAD_TOKEN,
    QUERY_SPECIAL_TOKENS,
    QWEN2_5_VL_TOKEN_IDS,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    TINY_TOKEN_IDS,
    UNK_TOKEN,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    build_query_tokenizer,
    build_tiny_tokenizer,
    tiny_vocabulary,
)
from marc.vocabulary.words import (
    BACKGROUND_COLOURS,
    BACKGROUND_PATTERNS,
    COUNT_WORDS,
    DIRECTIONS,
    LETTERS,
    OBJECT_COLOURS,
    QUESTION_KINDS,
    QUESTION_TEMPLATES,
    SHAPES,
    tokenize_words,
    vocabulary,
)

__all__ = [
    "BACKGROUND_COLOURS",
    "BACKGROUND_PATTERNS",
    "COUNT_WORDS",
    "DIRECTIONS",
    "IMAGE_PAD",
    "IM_END",
    "IM_START",
    "LETTERS",
    "OBJECT_COLOURS",
    "PAD_TOKEN",
    "QUERY_SPECIAL_TOKENS",
    "QUESTION_KINDS",
    "QUESTION_TEMPLATES",
    "QWEN2_5_VL_TOKEN_IDS",
    "SHAPES",
    "SPECIAL_TOKENS",
    "TAG_TOKENS",
    "TINY_TOKEN_IDS",
    "UNK_TOKEN",
    "VIDEO_PAD",
    "VISION_END",
    "VISION_START",
    "build_query_tokenizer",
    "build_tiny_tokenizer",
    "tiny_vocabulary",
    "tokenize_words",
    "vocabulary",
]
