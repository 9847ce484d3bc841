from uner.entity import Entity
from uner.grounding import ground


def test_every_occurrence_is_returned_with_offsets():
    text = "Paris is big. I love Paris."
    result = ground(text, "location", ["Paris"])
    assert result.entities == [Entity(0, 5, "location", "Paris"), Entity(21, 26, "location", "Paris")]
    assert all(text[e.start : e.end] == e.text for e in result.entities)


def test_case_sensitive_match_wins_over_case_insensitive():
    result = ground("paris and Paris", "location", ["Paris"])
    assert [(e.start, e.text) for e in result.entities] == [(10, "Paris")]


def test_case_insensitive_fallback_keeps_the_text_as_written():
    result = ground("I met BARACK OBAMA.", "person", ["Barack Obama"])
    assert [(e.start, e.end, e.text) for e in result.entities] == [(6, 18, "BARACK OBAMA")]


def test_answers_not_in_text_are_dropped_and_counted():
    result = ground("Barack Obama visited Paris.", "person", ["Barack Obama", "Joe Biden", ""])
    assert [e.text for e in result.entities] == ["Barack Obama"]
    assert result.ungrounded == ["Joe Biden", ""]


def test_regex_characters_in_answers_are_literal():
    result = ground("C++ (language) and C#", "programlang", ["C++", "C#", "(language)"])
    assert [e.text for e in result.entities] == ["C++", "C#", "(language)"]


def test_spaces_around_an_answer_are_not_part_of_the_entity():
    entities = ground("Hinton and Yoshua Bengio", "person", [" Yoshua Bengio "]).entities
    assert [(e.text, e.start, e.end) for e in entities] == [("Yoshua Bengio", 11, 24)]


def test_whole_word_occurrences_win_over_matches_inside_words():
    result = ground("MAIN memory and AI chips; the AIs", "field", ["AI"])
    assert [(e.start, e.text) for e in result.entities] == [(16, "AI")]


def test_whole_word_case_insensitive_wins_over_a_case_sensitive_substring():
    result = ground("MAIN memory for ai", "field", ["AI"])
    assert [(e.start, e.text) for e in result.entities] == [(16, "ai")]


def test_a_substring_is_the_fallback_when_no_whole_word_exists():
    result = ground("The Turing Awards", "award", ["Turing Award"])
    assert [(e.start, e.end, e.text) for e in result.entities] == [(4, 16, "Turing Award")]


def test_mentions_edged_with_symbols_match_next_to_words():
    result = ground("see C++11 and (language)s", "programlang", ["C++", "(language)"])
    assert [e.text for e in result.entities] == ["C++", "(language)"]
