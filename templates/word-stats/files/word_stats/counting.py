"""Counting words and picking the most frequent."""

from __future__ import annotations


def count_words(text: str) -> dict[str, int]:
    """How often each word occurs, lower-cased; a word is letters and digits, with apostrophes
    inside it (`don't`), as REQUIREMENTS.md says."""
    # TODO(autodev): split the text into words and count them case-insensitively.
    raise NotImplementedError


def top_words(counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The `n` most frequent words as (word, count): highest count first, ties alphabetically."""
    # TODO(autodev): order the counts as REQUIREMENTS.md says and keep the first n.
    raise NotImplementedError
