"""Per-dataset official F1, and agreement with the reference on the same queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from uner.bench.runner import Prediction
from uner.metrics import official_score
from uner.parsing import parse_normalized


@dataclass(frozen=True)
class DatasetScore:
    """Scores in percent; ``agreement`` and ``delta_f1`` are against the reference (None for it)."""

    queries: int
    f1: float
    precision: float
    recall: float
    agreement: float | None = None
    delta_f1: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _f1(predictions: Sequence[Prediction]) -> tuple[float, float, float]:
    score = official_score([p.raw for p in predictions], [p.gold for p in predictions])
    return 100 * score.f1, 100 * score.precision, 100 * score.recall


def agreement(predictions: Sequence[Prediction], reference: Sequence[Prediction]) -> float:
    """Percent of queries whose normalized answer set equals the reference's."""
    by_id = {p.id: p for p in reference}
    same = sum(set(parse_normalized(p.raw)) == set(parse_normalized(by_id[p.id].raw)) for p in predictions)
    return 100 * same / max(1, len(predictions))


def score_by_dataset(
    predictions: Sequence[Prediction], reference: Sequence[Prediction] | None = None
) -> dict[str, DatasetScore]:
    """Scores per dataset plus ``"average"`` (the unweighted mean over datasets, as papers report)."""
    datasets = list(dict.fromkeys(p.dataset for p in predictions))
    scores: dict[str, DatasetScore] = {}
    for dataset in datasets:
        mine = [p for p in predictions if p.dataset == dataset]
        f1, precision, recall = _f1(mine)
        if reference is None:
            scores[dataset] = DatasetScore(len(mine), f1, precision, recall)
            continue
        theirs = [p for p in reference if p.dataset == dataset]
        scores[dataset] = DatasetScore(len(mine), f1, precision, recall, agreement(mine, theirs), f1 - _f1(theirs)[0])
    if scores:
        values = list(scores.values())
        mean = lambda field: sum(getattr(v, field) for v in values) / len(values)  # noqa: E731
        scores["average"] = DatasetScore(
            sum(v.queries for v in values),
            mean("f1"),
            mean("precision"),
            mean("recall"),
            None if reference is None else mean("agreement"),
            None if reference is None else mean("delta_f1"),
        )
    return scores
