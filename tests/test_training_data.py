"""uniner-smol's training conversations: train/dev splits only, answers that stay in their text,
the negatives and name variants the recipe asks for."""

import json
import random
from collections import Counter

import pytest

from tests.conftest import CROSSNER_EVAL, DATA
from uner.bench import uniner_smol_data as data
from uner.eval_data import Passage, read_uniner_json


@pytest.fixture(scope="module")
def stream():
    return data.conversation_stream(DATA, data.Recipe(), seed=0)


def test_only_train_and_dev_splits_feed_training():
    files = [file for files in data.TRAIN_SPLITS.values() for file in files]
    assert files and not [f for f in files if "test" in f or f.endswith(".json")]


def test_no_evaluation_sentence_is_trained_on(stream):
    evaluated = {query.text for file in CROSSNER_EVAL.values() for query in read_uniner_json(file)}
    trained = {c.text for c in stream}
    assert len(trained) > 20_000
    assert not trained & evaluated


def test_every_answer_is_a_list_of_mentions_of_its_own_text(stream):
    lowered = 0
    for conv in stream:
        lowered += conv.text == conv.text.lower() and conv.dataset != "mit_movie"
        for _, answer in conv.answers:
            assert all(mention in conv.text for mention in json.loads(answer)), (conv.text, answer)
    assert 0.05 < lowered / len(stream) < 0.3  # some sentences lower-cased (plus those with no letters)


def test_every_present_type_is_asked_with_at_most_the_recipes_negatives():
    rng = random.Random(0)
    types = ["person", "location", "organization", "award", "book", "poem"]
    passage = Passage("Tolstoy wrote War and Peace in Russia", {"person": ["Tolstoy"], "book": ["War and Peace"]})
    for negatives, asked in ((0, 2), (1, 3), (3, 5), (None, 6)):
        chosen = data.ask(passage, types, data.Recipe(negatives=negatives), rng)
        assert len(chosen) == asked and {"person", "book"} <= set(chosen)


def test_type_names_vary_but_the_eval_files_own_name_stays_the_commonest():
    rng = random.Random(0)
    names = Counter(data.vary_name("musical artist", rng) for _ in range(2000))
    assert names.most_common(1)[0] == ("musical artist", names["musical artist"])
    assert 0.5 < names["musical artist"] / 2000 < 0.65
    assert {"musician", "musical artists", "Musical Artist", "MUSICAL ARTIST", "musical_artist"} <= set(names)


@pytest.mark.parametrize(
    ("name", "plural"),
    [
        ("person", "persons"),
        ("country", "countries"),
        ("day", "days"),
        ("music genre", "music genres"),
        ("metrics", "metrics"),
        ("class", "classes"),
    ],
)
def test_plural_of_a_type_name(name, plural):
    assert data.plural(name) == plural


def test_every_prefix_of_the_stream_mixes_the_datasets_by_their_shares(stream):
    counts = Counter(c.dataset for c in stream[:2000])  # the CrossNER sets last ~2,600 conversations
    for dataset, share in data.MIX.items():
        assert abs(counts[dataset] / 2000 - share) < 0.01


def test_a_left_out_dataset_never_appears():
    stream = data.conversation_stream(DATA, data.Recipe(), seed=0, exclude=frozenset({"crossner_music"}))
    assert "crossner_music" not in {c.dataset for c in stream}


def test_a_training_plan_uses_every_example_once_in_batches_within_the_token_limit():
    from uner.bench.train_uniner_smol import batches

    rng = random.Random(0)
    examples = [([0] * rng.randint(5, 300), [True]) for _ in range(500)]
    plan = batches(examples, 2048, seed=0)
    assert sorted(i for batch in plan for i in batch) == list(range(500))
    assert all(max(len(examples[i][0]) for i in batch) * len(batch) <= 2048 for batch in plan)


def test_a_token_budget_larger_than_the_stream_repeats_it():
    from uner.bench.train_uniner_smol import plan_examples

    examples = [([0] * 10, [True]), ([0] * 30, [True])]
    assert [len(e[0]) for e in plan_examples(examples, 95)] == [10, 30, 10, 30, 10, 30]


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_the_learning_rate_warms_up_then_decays_to_a_tenth(schedule):
    from uner.bench.train_uniner_smol import learning_rate

    rates = [learning_rate(step, 100, 1.0, 5, schedule) for step in range(101)]
    assert rates[0] == pytest.approx(0.2) and rates[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[5:], rates[6:]))
    assert rates[100] == pytest.approx(0.1)
