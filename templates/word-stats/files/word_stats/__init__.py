"""Word Stats: count the words of a text file and show the most frequent."""

from word_stats.counting import count_words, top_words

__all__ = ["count_words", "top_words"]
