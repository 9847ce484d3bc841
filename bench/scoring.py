"""Per-dataset official F1 with its interval, and agreement with the reference on the same queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from uner.bench.runner import Prediction
from uner.bench.statistics import AVERAGE, ChangedAnswers, bootstrap, changed_answers
from uner.metrics import official_score
from uner.parsing import parse_normalized


@dataclass(frozen=True)
class DatasetScore:
    """Scores in percent; ``agreement``, ``delta_f1`` and what changed are against the reference
    (None for it). Intervals: 95 %, paired bootstrap over texts (:mod:`uner.bench.statistics`)."""

    queries: int
    f1: float
    precision: float
    recall: float
    f1_ci95: tuple[float, float]
    agreement: float | None = None
    delta_f1: float | None = None
    delta_f1_ci95: tuple[float, float] | None = None
    changed_answers: ChangedAnswers | None = None

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
    intervals = bootstrap(predictions, reference)
    scores: dict[str, DatasetScore] = {}
    for dataset in datasets:
        mine = [p for p in predictions if p.dataset == dataset]
        f1, precision, recall = _f1(mine)
        ci = intervals[dataset]
        if reference is None:
            scores[dataset] = DatasetScore(len(mine), f1, precision, recall, ci.f1_ci95)
            continue
        theirs = [p for p in reference if p.dataset == dataset]
        scores[dataset] = DatasetScore(
            len(mine),
            f1,
            precision,
            recall,
            ci.f1_ci95,
            agreement(mine, theirs),
            f1 - _f1(theirs)[0],
            ci.delta_f1_ci95,
            changed_answers(mine, theirs),
        )
    if scores:
        values = list(scores.values())
        mean = lambda field: sum(getattr(v, field) for v in values) / len(values)  # noqa: E731
        changed = [v.changed_answers for v in values if v.changed_answers is not None]
        scores[AVERAGE] = DatasetScore(
            sum(v.queries for v in values),
            mean("f1"),
            mean("precision"),
            mean("recall"),
            intervals[AVERAGE].f1_ci95,
            None if reference is None else mean("agreement"),
            None if reference is None else mean("delta_f1"),
            intervals[AVERAGE].delta_f1_ci95,
            sum(changed, ChangedAnswers(0, 0, 0)) if reference is not None else None,
        )
    return scores
