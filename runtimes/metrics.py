"""UniNER's official metric (src/eval/evaluate.py): micro precision/recall/F1 over queries.

Each answer, gold and predicted alike, goes through the official parser (first ``[...]`` at the
start, ``json.loads``, ``normalize_answer``, de-duplicated); a predicted mention is correct when
its normalized form is in the query's gold set. The 1e-10 terms are the evaluator's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from uner.parsing import parse_normalized


@dataclass(frozen=True)
class Score:
    """Micro scores as fractions (multiply by 100 for the paper's numbers)."""

    precision: float
    recall: float
    f1: float
    n_correct: int
    n_predicted: int
    n_gold: int

    def as_percent(self) -> dict[str, float]:
        return {"precision": 100 * self.precision, "recall": 100 * self.recall, "f1": 100 * self.f1}


def score_normalized(predicted: Iterable[Sequence[str]], gold: Iterable[Sequence[str]]) -> Score:
    """Micro P/R/F1 from per-query lists of already-normalized, de-duplicated mentions."""
    n_correct = n_predicted = n_gold = 0
    for pred_items, gold_items in zip(predicted, gold, strict=True):
        gold_set = set(gold_items)
        n_correct += sum(item in gold_set for item in pred_items)
        n_predicted += len(pred_items)
        n_gold += len(gold_items)
    precision = n_correct / (n_predicted + 1e-10)
    recall = n_correct / (n_gold + 1e-10)
    f1 = 2 * precision * recall / (precision + recall + 1e-10)
    return Score(precision, recall, f1, n_correct, n_predicted, n_gold)


def official_score(predictions: Sequence[str], golds: Sequence[str]) -> Score:
    """The official evaluator on raw answer strings (model outputs and gold JSON answers).

    >>> round(official_score(['["Paris", "the Louvre"]'], ['["Paris", "Louvre"]']).f1, 6)
    1.0
    """
    return score_normalized(map(parse_normalized, predictions), map(parse_normalized, golds))
