from runtimes.entity import Entity
from runtimes.grounding import ground


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
