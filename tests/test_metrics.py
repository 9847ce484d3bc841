"""The official UniNER metric and the evaluation-data readers, on known values."""

import json

import pytest

from tests.conftest import CROSSNER_EVAL, DATA
from uner.errors import InputError
from uner.eval_data import bio_queries, read_bio, read_queries
from uner.metrics import official_score


def test_gold_against_gold_is_100_on_every_shared_eval_file():
    for path in CROSSNER_EVAL.values():
        golds = [query.gold for query in read_queries(path)]
        assert round(100 * official_score(golds, golds).f1, 1) == 100.0


def test_punctuation_articles_and_case_do_not_count():
    score = official_score(['["The U.S. Army", "an apple"]'], ['["us army", "Apple"]'])
    assert (score.n_correct, score.n_predicted, score.n_gold) == (2, 2, 2)


def test_duplicates_count_once_after_normalizing():
    score = official_score(['["Paris", "paris", "Paris."]'], ['["Paris", "Paris"]'])
    assert (score.n_correct, score.n_predicted, score.n_gold) == (1, 1, 1)


def test_invalid_or_unanchored_answers_are_empty_predictions():
    golds = ['["Paris"]'] * 4
    predictions = ['["Paris"', 'Answer: ["Paris"]', "[1, 2]", "Paris"]
    score = official_score(predictions, golds)
    assert (score.n_correct, score.n_predicted, score.n_gold) == (0, 0, 4)
    assert score.f1 == 0.0


def test_micro_scores_over_queries_by_hand():
    # 2 correct of 3 predicted, 2 of 4 gold: P 2/3, R 1/2, F1 4/7
    score = official_score(['["a b", "c"]', '["d"]', "[]"], ['["a b", "x"]', '["d"]', '["y"]'])
    assert score.precision == pytest.approx(2 / 3) and score.recall == pytest.approx(1 / 2)
    assert score.f1 == pytest.approx(4 / 7)


def test_bio_files_become_every_sentence_times_every_type(tmp_path):
    # tag-last (CrossNER), tag-first (MIT movie) and CoNLL-2003's four columns
    (tmp_path / "a.txt").write_text(
        "Geoffrey\tB-researcher\nHinton\tI-researcher\nat\tO\nGoogle\tB-organisation\n\nHi\tO\n"
    )
    (tmp_path / "b.bio").write_text("O\tmovies\nO\twith\nB-ACTOR\tbruce\nI-ACTOR\twillis\n")
    (tmp_path / "c.txt").write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
    )
    queries = bio_queries(tmp_path / "a.txt")
    assert [(q.text, q.label, json.loads(q.gold)) for q in queries] == [
        ("Geoffrey Hinton at Google", "researcher", ["Geoffrey Hinton"]),
        ("Geoffrey Hinton at Google", "organization", ["Google"]),
        ("Hi", "researcher", []),
        ("Hi", "organization", []),
    ]
    passages, types = read_bio(tmp_path / "b.bio")
    assert passages[0].mentions == {"actor": ["bruce willis"]} and types == ["actor"]
    passages, types = read_bio(tmp_path / "c.txt")
    assert passages[0].mentions == {"organization": ["EU"]} and types == ["organization"]  # MISC not asked


def test_crossner_test_split_reproduces_the_official_eval_file():
    official = {(q.text, q.label): q.gold for q in read_queries(CROSSNER_EVAL["ai"])}
    ours = {(q.text, q.label): q.gold for q in read_queries(DATA / "crossner_ai" / "test.txt")}
    assert set(ours) == set(official)
    assert sum(ours[key] == official[key] for key in official) >= len(official) - 4


def test_unreadable_evaluation_files_are_input_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"not": "a list of records"}')
    (tmp_path / "bad.txt").write_text("no tags here\n")
    for name in ("bad.json", "bad.txt", "missing.json"):
        with pytest.raises(InputError):
            read_queries(tmp_path / name)
