from uner.parsing import normalize_answer, parse_answer, parse_normalized


def test_parses_json_list_and_deduplicates_in_order():
    assert parse_answer('["Paris", "Rome", "Paris"]') == ["Paris", "Rome"]


def test_only_a_list_at_the_start_counts_like_official_re_match():
    assert parse_answer('["Paris"] and ["Rome"]') == ["Paris"]
    assert parse_answer('The answer is ["Paris"]') == []


def test_invalid_json_or_prose_gives_empty_without_raising():
    for raw in ["", "[", "[Paris]", '["unterminated]', "The person in the text is Barack Obama.", "[]"]:
        assert parse_answer(raw) == []


def test_non_string_items_make_the_answer_unparseable_as_officially():
    assert parse_answer("[1, 2]") == []
    assert parse_answer('["a", 3]') == []


def test_normalize_strips_case_punctuation_articles_and_spaces():
    assert normalize_answer("The  U.S. Army") == "us army"
    assert normalize_answer("an Apple, a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"


def test_parse_normalized_deduplicates_after_normalizing():
    assert parse_normalized('["The Beatles", "beatles", "Beatles!"]') == ["beatles"]
