"""Every word the embedded default writes: attribute names, question templates, answers.

The generator renders and asks with these names (its colours' RGB values live beside it in
``marc.data.synthetic``); the word-level tokenizers are built from :func:`vocabulary`, so a
word the generator can write is always a known token.
"""

from __future__ import annotations

# Background and object colours are disjoint so an object never blends into its background.
BACKGROUND_COLOURS = ("black", "grey", "navy", "brown", "olive", "teal")
BACKGROUND_PATTERNS = ("plain", "striped", "checkered")
OBJECT_COLOURS = ("red", "green", "blue", "yellow", "white", "pink")
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down", "still")
COUNT_WORDS = ("one", "two", "three", "four")
QUESTION_KINDS = ("attribute", "count", "motion", "order")
LETTERS = ("A", "B", "C", "D")

# The questions the generator asks, as ``str.format`` templates ({event} is an event's name).
QUESTION_TEMPLATES = {
    "colour_of_shape": "What colour is the {shape} in the event with {event}?",
    "shape_of_colour": "What shape is the {colour} object in the event with {event}?",
    "count": "How many objects are there in the event with {event}?",
    "motion": "In which direction does the {colour} {shape} move in the event with {event}?",
    "order": "Which background comes right after {event}?",
}
# Other texts the models read or write: a prompt preamble, the reasoning's closing phrase
# (marc.modules.vlm_stage.sft_target) and the options header (marc.data.prompts).
OTHER_TEXTS = (
    "Select the best answer to the following multiple-choice question based on the video.",
    "the answer is",
    "Options:",
)
# Words of captions and event names ("a red circle moves left", "the black plain background").
CAPTION_WORDS = ("moves", "stays", "still", "with", "and", "a", "background")
PUNCTUATION = ".,?:;()"


def tokenize_words(text: str) -> list[str]:
    """Split text into the word-level units of the embedded default (punctuation apart)."""
    for mark in PUNCTUATION:
        text = text.replace(mark, f" {mark} ")
    return text.split()


def vocabulary() -> list[str]:
    """Every word the generated questions, options, captions and answers use (both cases)."""
    words: set[str] = set()
    for text in (*QUESTION_TEMPLATES.values(), *OTHER_TEXTS):
        words.update(w for w in tokenize_words(text) if not w.startswith("{"))
    for group in (
        BACKGROUND_COLOURS,
        BACKGROUND_PATTERNS,
        OBJECT_COLOURS,
        SHAPES,
        DIRECTIONS,
        COUNT_WORDS,
        LETTERS,
        CAPTION_WORDS,
    ):
        words.update(group)
    # Both cases, so a lower-casing tokenizer and a case-keeping one both cover the texts.
    return sorted(words | {w.lower() for w in words})
