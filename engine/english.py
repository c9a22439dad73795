"""English words for EDA and the term analysis: one word pattern, negations, stop words.

Words keep their contractions ("isn't" is one word, not "isn" + "t"). Stop words are scikit-learn's
English list, less the negations: a negation can flip a label, so EDA protects it and the term analysis
keeps it (whether "not" marks hard texts is worth seeing).
"""

from __future__ import annotations

import functools
import re

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
NEGATIONS = frozenset(
    {"not", "no", "never", "without", "nor", "neither", "none", "nobody", "nothing", "nowhere", "cannot", "hardly"}
    | {"barely", "scarcely", "lack", "lacks", "lacking", "ain't", "dont", "doesnt", "didnt", "isnt", "wasnt", "cant"}
)


def is_negation(word: str) -> bool:
    w = word.lower().replace("’", "'")
    return w in NEGATIONS or w.endswith("n't")


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words without the negations."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(w for w in ENGLISH_STOP_WORDS if not is_negation(w))


def words(text: str) -> list[str]:
    """The words of a text, as written (letters only; contractions kept whole)."""
    return WORD.findall(text)


def terms(text: str) -> list[str]:
    """Lower-cased words without stop words (negations kept): the terms of the report's term analysis."""
    stop = stop_words()
    return [w for w in (w.lower().replace("’", "'") for w in WORD.findall(text)) if w not in stop]
