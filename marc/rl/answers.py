"""Reading answers out of completions and deciding whether they are correct.

A completion answers inside ``<answer>...</answer>`` (Video-R1 format). A solution is either
the same tagged form or a bare answer. How two answers are compared depends on the
question's ``problem_type``:

- ``"multiple choice"``: the option letters, read from ``"B"``, ``"B."``, ``"(B)"``,
  ``"B. red"`` or ``" b "``; when the question's options are given, an answer that is
  exactly one option's text (``"red"`` for ``"B. red"``, normalised as free text) names
  that option, as multiple-choice evaluators commonly accept;
- ``"numerical"`` and ``"regression"``: the first number of each, equal within a relative
  tolerance (a target of 0 needs exactly 0);
- anything else (``"free-form"``, ``"OCR"``, unknown types): normalised text (lower case,
  no punctuation, no articles, single spaces) must be equal.

Nothing here raises on a completion, whatever the string; a solution with no answer in it
is a data error and raises.
"""

from __future__ import annotations

import math
import re
import unicodedata

# Bumped whenever is_correct changes what it accepts, or the accuracy a_teacher averages
# does, so cached accuracies (the teacher's a_teacher cache) computed under an older rule
# are recomputed. 2: option text accepted. 3: a_teacher is Video-R1's graded accuracy.
SCORING_VERSION = 3
OPEN_TAG = "<answer>"
CLOSE_TAG = "</answer>"
MULTIPLE_CHOICE = "multiple choice"
NUMERIC_TYPES = frozenset({"numerical", "numeric", "number", "regression"})

# A letter alone, in parentheses, or followed by ".", ")" or ":" and option text. A letter
# followed by a plain space is not accepted, so "a red circle" is not read as option A.
_CHOICE = re.compile(r"\(?([A-Za-z])\)?(?:[.:)](?:\s.*)?)?", re.DOTALL)
_CHOICE_IN_PARENS = re.compile(r"\(([A-Za-z])\)(?:\s.*)?", re.DOTALL)
# The text of an option after its letter: "B. red", "B) red", "(B) red" -> "red".
_OPTION_TEXT = re.compile(r"\s*\(?[A-Za-z]\)?[.:)]?\s*(.*)", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_NUMBER_WORDS = {
    word: float(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}


def extract_answer(completion: str) -> str | None:
    """Stripped content of the last ``<answer>...</answer>``; None when missing or empty."""
    if not isinstance(completion, str):
        return None
    end = completion.rfind(CLOSE_TAG)
    if end < 0:
        return None
    # The opening tag nearest before the last closing tag, so "<answer> <answer>B</answer>"
    # reads "B" rather than "<answer>B".
    start = completion.rfind(OPEN_TAG, 0, end)
    if start < 0:
        return None
    content = completion[start + len(OPEN_TAG) : end].strip()
    return content or None


def answer_from_solution(solution: str) -> str:
    """Reference answer of a solution, tagged (``"<answer>B</answer>"``) or bare (``"B"``)."""
    if not isinstance(solution, str):
        raise ValueError(f"solution must be a string, got {type(solution).__name__}")
    answer = extract_answer(solution) if CLOSE_TAG in solution else solution.strip()
    if not answer:
        raise ValueError(f"solution has no answer in it: {solution!r}")
    return answer


def normalise_choice(text: str) -> str | None:
    """Upper-case option letter of ``text`` ("B", "B.", "(B)", "B. red", " b "), else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    match = _CHOICE.fullmatch(text) or _CHOICE_IN_PARENS.fullmatch(text)
    return match.group(1).upper() if match else None


def split_option(option: str) -> tuple[str, str] | None:
    """Letter and text of an option ("B. red", "B) red", "(B) red" -> ("B", "red")), else None."""
    letter = normalise_choice(option)
    if letter is None:
        return None
    return letter, _OPTION_TEXT.fullmatch(option).group(1).strip()


def option_letter(text: str, options: list[str] | None) -> str | None:
    """Letter of the option whose text is ``text`` (``"red"`` in ``["A. blue", "B. red"]``).

    Texts are compared normalised (``normalise_text``); None when no option matches, when
    several do, or without options.
    """
    wanted = normalise_text(text)
    if not wanted or not options:
        return None
    parts = (split_option(option) for option in options)
    letters = {part[0] for part in parts if part and normalise_text(part[1]) == wanted}
    return letters.pop() if len(letters) == 1 else None


def parse_number(text: str) -> float | None:
    """First finite number in ``text`` ("3", "-2.5", "1,000", "50%", "3 m", "three"), else None."""
    if not isinstance(text, str):
        return None
    words = normalise_text(text)
    if words in _NUMBER_WORDS:
        return _NUMBER_WORDS[words]
    match = _NUMBER.search(_THOUSANDS.sub("", text))
    if match is None:
        return None
    value = float(match.group(0))
    return value if math.isfinite(value) else None


def numbers_match(prediction: float, target: float, tolerance: float = 0.01) -> bool:
    """Whether ``prediction`` is within ``tolerance`` of ``target``, relative to ``|target|``."""
    return abs(prediction - target) <= tolerance * abs(target)


def normalise_text(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed to single spaces."""
    if not isinstance(text, str):
        return ""
    text = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def normalise_problem_type(problem_type: str) -> str:
    """Canonical spelling of a problem type: "Multiple_Choice" -> "multiple choice"."""
    return " ".join(str(problem_type).lower().replace("_", " ").replace("-", " ").split())


def answers_match(
    prediction: str,
    reference: str,
    problem_type: str,
    tolerance: float = 0.01,
    options: list[str] | None = None,
) -> bool:
    """Whether two bare answers agree under the comparison rule of ``problem_type``.

    ``options`` (multiple choice only) lets an answer name its option by the option's text.
    """
    kind = normalise_problem_type(problem_type)
    if kind == MULTIPLE_CHOICE:
        reference_letter = normalise_choice(reference)
        # A reference that is not a letter (bare option text) is compared as text.
        if reference_letter is not None:
            predicted_letter = normalise_choice(prediction) or option_letter(prediction, options)
            return predicted_letter == reference_letter
    elif kind in NUMERIC_TYPES:
        reference_number = parse_number(reference)
        if reference_number is not None:
            predicted_number = parse_number(prediction)
            return predicted_number is not None and numbers_match(
                predicted_number, reference_number, tolerance
            )
    predicted_text = normalise_text(prediction)
    return bool(predicted_text) and predicted_text == normalise_text(reference)


def is_correct(
    completion: str,
    solution: str,
    problem_type: str,
    tolerance: float = 0.01,
    options: list[str] | None = None,
) -> bool:
    """Whether the ``<answer>`` of ``completion`` matches ``solution`` for ``problem_type``.

    With the question's ``options``, a multiple-choice answer may name its option by text.
    """
    prediction = extract_answer(completion)
    if prediction is None:
        return False
    reference = answer_from_solution(solution)
    return answers_match(prediction, reference, problem_type, tolerance, options)
