"""The two word-level tokenizers of the embedded default, as transformers fast tokenizers.

- :func:`build_tiny_tokenizer`: the tiny Qwen2.5-VL's tokenizer (chat control tokens, vision
  placeholders, reasoning tags, then every word of :func:`vocabulary`), so a small language
  model trained from scratch reads and writes whole words.
- :func:`build_query_tokenizer`: the retriever's query encoder tokenizer (a BERT-style
  ``[CLS] ... [SEP]`` over the same words).

Word level means every word of a question, caption or completion is one token, and
completions round-trip exactly through encode and decode.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import PreTrainedTokenizerFast

from marc.vocabulary.words import LETTERS, PUNCTUATION, vocabulary

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_PAD = "<|video_pad|>"
IMAGE_PAD = "<|image_pad|>"
# Control tokens: dropped by decode(skip_special_tokens=True).
SPECIAL_TOKENS = (
    PAD_TOKEN,
    UNK_TOKEN,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    VIDEO_PAD,
    IMAGE_PAD,
)
# Reasoning tags: whole tokens that survive decoding, so rewards can parse them.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
EXTRA_WORDS = ("system", "user", "assistant", "\n", "think", "then", "first")
DIGITS = tuple("0123456789")

# Ids are fixed by the order above, so configs can name them without a tokenizer at hand.
TINY_TOKEN_IDS = {token: index for index, token in enumerate(SPECIAL_TOKENS + TAG_TOKENS)}
# Where Qwen2.5-VL keeps its control tokens: the tiny tokenizer built with these ids drives
# a full-size Qwen2.5-VL config (random weights) without the real tokenizer files.
QWEN2_5_VL_TOKEN_IDS = {
    PAD_TOKEN: 151643,
    IM_START: 151644,
    IM_END: 151645,
    VISION_START: 151652,
    VISION_END: 151653,
    IMAGE_PAD: 151655,
    VIDEO_PAD: 151656,
}

QUERY_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def tiny_vocabulary() -> list[str]:
    """Every token of the tiny tokenizer in id order: specials, tags, then words."""
    tokens = list(SPECIAL_TOKENS + TAG_TOKENS)
    # The normaliser lowercases text, so only the answer letters need an upper-case entry.
    words = {w if w in LETTERS else w.lower() for w in vocabulary()}
    words |= set(EXTRA_WORDS) | set(DIGITS) | set(LETTERS) | set(PUNCTUATION)
    tokens += sorted(words - set(tokens))
    return tokens


def build_tiny_tokenizer(token_ids: dict[str, int] | None = None) -> PreTrainedTokenizerFast:
    """Word-level tokenizer of the tiny VLM; eos ``<|im_end|>``, pad ``<pad>``.

    ``token_ids`` moves named tokens to other ids (e.g. :data:`QWEN2_5_VL_TOKEN_IDS`); the
    other tokens keep consecutive ids from 0 in :func:`tiny_vocabulary` order.
    """
    token_ids = token_ids or {}
    free = (
        i for i in range(len(tiny_vocabulary()) + len(token_ids)) if i not in token_ids.values()
    )
    vocab = {token: token_ids.get(token, -1) for token in tiny_vocabulary()}
    vocab = {token: index if index >= 0 else next(free) for token, index in vocab.items()}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Lowercase()
    # Same units as tokenize_words, plus newlines kept as tokens (the chat template uses
    # them) and numbers split into digits.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex(f"[{PUNCTUATION}]".replace("(", r"\(")), "isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    # WordPiece with an unused prefix and no cleanup simply joins tokens with spaces.
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    tokenizer.add_tokens([AddedToken(token, normalized=False) for token in TAG_TOKENS])
    # Answer letters keep their case (the normaliser lowercases everything else, and the
    # article "a" is a different word); single_word stops them matching inside words.
    tokenizer.add_tokens([AddedToken(x, single_word=True, normalized=False) for x in LETTERS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def _query_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])


def build_query_tokenizer(
    extra_tokens: Iterable[str] = (), model_max_length: int = 64
) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over :func:`vocabulary` plus ``extra_tokens``."""
    pre_tokenizer = _query_pre_tokenizer()
    words: set[str] = set()
    # Vocabulary entries go through the same splitting as text, so a word such as
    # "multiple-choice" is stored as the pieces the tokenizer will actually see.
    for word in [*vocabulary(), *extra_tokens]:
        words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(word.lower()))
    words.difference_update(QUERY_SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate([*QUERY_SPECIAL_TOKENS, *sorted(words)])}

    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=model_max_length,
    )
