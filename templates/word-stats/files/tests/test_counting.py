from word_stats import count_words, top_words


def test_counts_are_case_insensitive():
    assert count_words("The cat and the hat. THE END") == {"the": 3, "cat": 1, "and": 1, "hat": 1, "end": 1}


def test_apostrophes_inside_a_word_belong_to_it():
    text = "Don't stop: 'quoted' words, DON'T rock'n'roll and the dogs' bones"
    assert count_words(text) == {
        "don't": 2, "stop": 1, "quoted": 1, "words": 1, "rock'n'roll": 1, "and": 1, "the": 1, "dogs": 1, "bones": 1,
    }


def test_digits_are_word_characters_and_punctuation_separates():
    assert count_words("route 66, Route-66; pi is 3.14 in snake_case") == {
        "route": 2, "66": 2, "pi": 1, "is": 1, "3": 1, "14": 1, "in": 1, "snake": 1, "case": 1,
    }


def test_letters_beyond_ascii_and_texts_without_words():
    assert count_words("Café CAFÉ naïve") == {"café": 2, "naïve": 1}
    assert count_words("") == {}
    assert count_words("-- ... !! ''") == {}


def test_top_words_by_count_then_alphabetically():
    counts = {"pear": 2, "apple": 2, "fig": 5, "kiwi": 1, "banana": 2}
    assert top_words(counts, 3) == [("fig", 5), ("apple", 2), ("banana", 2)]
    assert top_words(counts, 10) == [("fig", 5), ("apple", 2), ("banana", 2), ("pear", 2), ("kiwi", 1)]


def test_top_words_of_nothing():
    assert top_words({}, 5) == []
