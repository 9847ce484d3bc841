"""The bench's statistics: paired bootstrap intervals over texts, and counts of changed answers."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import assert_one_line_error, run
from uner.bench.cli import parse_limit
from uner.bench.runner import Prediction
from uner.bench.statistics import bootstrap, changed_answers
from uner.bench.suite import plan_variants
from uner.cli import main as uner
from uner.errors import InputError


def _prediction(index: int, text: str, gold: str, raw: str, dataset: str = "d") -> Prediction:
    return Prediction(str(index), dataset, text, "person", gold, raw, [], 10, 2, 0.1, 0.0)


def _variant(raws: list[str], dataset: str = "d") -> list[Prediction]:
    """Two texts, one query each: A's gold is ["Ann"], B's is ["Bob"]."""
    texts, golds = ["A", "B"], ['["Ann"]', '["Bob"]']
    return [_prediction(i, t, g, r, dataset) for i, (t, g, r) in enumerate(zip(texts, golds, raws))]


def test_the_f1_interval_of_two_texts_is_what_resampling_them_by_hand_gives():
    # A is right (1 correct, 1 predicted, 1 gold), B is missed (0, 0, 1). Resampling two texts
    # with replacement gives AA (p = 1/4, F1 100), AB or BA (1/2, P 1 R 1/2: F1 66.7), BB (1/4,
    # F1 0): the 2.5th and 97.5th percentiles fall inside the two outer atoms.
    candidate = _variant(['["Ann"]', "[]"])
    reference = _variant(['["Ann"]', '["Bob"]'])  # F1 100 on every resample
    intervals = bootstrap(candidate, reference)
    assert intervals["d"].f1_ci95 == pytest.approx((0.0, 100.0), abs=1e-6)
    # ΔF1 on the same draws: AA 0, AB −33.3, BB −100
    assert intervals["d"].delta_f1_ci95 == pytest.approx((-100.0, 0.0), abs=1e-6)
    assert bootstrap(reference)["d"] == bootstrap(reference)["d"]  # fixed seed


def test_identical_predictions_have_a_zero_width_delta_interval_and_no_changed_answers():
    reference = _variant(['["Ann"]', "[]"]) + _variant(['["Ann", "Eve"]', '["Bob"]'], dataset="e")
    candidate = [Prediction(**{**p.to_dict(), "seconds": 9.9}) for p in reference]
    intervals = bootstrap(candidate, reference)
    for name in ("d", "e", "average"):
        assert intervals[name].delta_f1_ci95 == (0.0, 0.0)
        assert intervals[name].f1_ci95[0] < intervals[name].f1_ci95[1]  # F1 itself still varies
    assert changed_answers(candidate, reference).queries == 0  # ids repeat across datasets: matched per dataset


def test_the_delta_interval_is_paired_so_a_shift_on_one_text_alone_is_not_noise():
    # the candidate loses one mention of one text of 40; unpaired intervals of 40 texts are wide,
    # the paired ΔF1 interval only spans what that one text can do
    texts = [f"t{i}" for i in range(40)]
    answers = ['["Ann"]' if i % 2 else '["Ann", "Bob"]' for i in range(40)]
    reference = [_prediction(i, t, '["Ann", "Bob"]', raw) for i, (t, raw) in enumerate(zip(texts, answers))]
    candidate = [Prediction(**{**p.to_dict(), "raw": "[]"}) if p.text == "t0" else p for p in reference]
    intervals = bootstrap(candidate, reference)
    low, high = intervals["d"].delta_f1_ci95
    f1_low, f1_high = intervals["d"].f1_ci95
    assert high <= 0.0 and high - low < (f1_high - f1_low) / 2


def test_changed_answers_count_queries_and_the_mentions_gained_and_lost():
    reference = _variant(['["Ann"]', '["Bob", "Bo"]'])
    candidate = _variant(['["ann"]', '["Bob", "Eve", "Max"]'])  # "ann" normalizes to the same mention
    changed = changed_answers(candidate, reference)
    assert (changed.queries, changed.entities_gained, changed.entities_lost) == (1, 2, 1)


@pytest.mark.parametrize(("value", "limit"), [("all", None), ("ALL", None), ("300", 300)])
def test_limit_accepts_a_positive_count_or_all(value, limit):
    assert parse_limit(value) == limit


def test_a_limit_that_is_neither_a_count_nor_all_is_one_error_line(tmp_path, capsys):
    with pytest.raises(InputError):
        parse_limit("0")
    argv = ["bench", "-r", "x", "-d", tmp_path / "d.json", "-o", tmp_path / "o", "--limit", "many"]
    code, _, err = run(uner, argv, capsys)
    assert_one_line_error(code, err, "expected --limit to be a positive number of queries or 'all'")


def test_the_reference_runs_on_the_batched_engine_unless_asked_per_query(tiny_spm_hf):
    assert plan_variants(str(tiny_spm_hf), [], baselines=False)[0].options["batched"] is True
    official = plan_variants(str(tiny_spm_hf), [], baselines=False, reference_per_query=True)
    assert official[0].options["batched"] is False


def _write_predictions(folder, variant: str, predictions: list[Prediction]) -> None:
    rows = [{k: v for k, v in p.to_dict().items() if k != "prefill_seconds"} for p in predictions]
    from uner.bench.report import predictions_file

    (folder / predictions_file(variant)).write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_compare_gives_the_paired_delta_of_two_candidates_not_of_each_against_the_reference(tmp_path):
    from uner.bench.compare import paired_delta

    _write_predictions(tmp_path, "reference:better", _variant(['["Ann"]', '["Bob"]']))  # F1 100
    _write_predictions(tmp_path, "worse", _variant(['["Ann"]', "[]"]))  # F1 66.7
    delta = paired_delta(tmp_path, "reference:better", "worse")  # the report's name, not the file's
    assert delta.delta_f1["d"] == pytest.approx(100 - 200 / 3, abs=1e-6)
    assert delta.delta_f1_ci95["d"] == pytest.approx((0.0, 100.0), abs=1e-6)  # the hand-resampled atoms, mirrored
    assert (delta.changed_queries, delta.queries) == (1, 2)
    assert paired_delta(tmp_path, "worse", "worse").delta_f1_ci95["average"] == (0.0, 0.0)


def test_compare_refuses_an_unknown_variant_and_a_malformed_pair_with_one_error_line(tmp_path, capsys):
    from uner.bench.compare import main

    _write_predictions(tmp_path, "a", _variant(['["Ann"]', "[]"]))
    assert main([str(tmp_path), "--pair", "a=missing"]) == 1
    assert capsys.readouterr().err == "Error: expected a variant among a in " + f"{tmp_path}, got 'missing'\n"
    assert main([str(tmp_path), "--pair", "a"]) == 1
    assert capsys.readouterr().err.startswith("Error: expected --pair CANDIDATE=BASELINE")
