"""The word-level tokenizer of the embedded default, as a transformers fast tokenizer."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from marc.data.synthetic import vocabulary

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])


def build_word_tokenizer(
    extra_tokens: Iterable[str] = (), model_max_length: int = 64
) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over the synthetic vocabulary plus ``extra_tokens``."""
    pre_tokenizer = _pre_tokenizer()
    words: set[str] = set()
    # Vocabulary entries go through the same splitting as text, so a word such as
    # "multiple-choice" is stored as the pieces the tokenizer will actually see.
    for word in [*vocabulary(), *extra_tokens]:
        words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(word.lower()))
    words.difference_update(SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(words)])}

    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
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
