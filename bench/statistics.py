"""How sure a bench figure is: a paired bootstrap over whole texts, and which answers changed.

A text is the unit that is resampled, not a query: the types asked of one text share its
difficulty (and, on the batched engine, its prefix), so queries of one text are not independent.
Each dataset is resampled on its own (the average is the unweighted mean over datasets, as
papers report it), and every variant is resampled with the *same* draws: the ΔF1 interval is
that of the difference on identical samples, much narrower than the two F1 intervals suggest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uner.bench.runner import Prediction
from uner.metrics import official_score
from uner.parsing import parse_normalized

ROUNDS = 1000
SEED = 0
AVERAGE = "average"


@dataclass(frozen=True)
class Intervals:
    """95 % percentile intervals in percent; ``delta_f1_ci95`` is None without a reference."""

    f1_ci95: tuple[float, float]
    delta_f1_ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class ChangedAnswers:
    """Queries whose normalized answer set differs from the reference's, and the mentions they
    gained (answered, the reference did not) and lost (the reference answered, they did not)."""

    queries: int
    entities_gained: int
    entities_lost: int

    def to_dict(self) -> dict:
        return {"queries": self.queries, "entities_gained": self.entities_gained, "entities_lost": self.entities_lost}

    def __add__(self, other: ChangedAnswers) -> ChangedAnswers:
        return ChangedAnswers(
            self.queries + other.queries,
            self.entities_gained + other.entities_gained,
            self.entities_lost + other.entities_lost,
        )


def _counts_by_text(predictions: Sequence[Prediction], texts: list[str], dataset: str) -> np.ndarray:
    """(texts, 3) array of correct, predicted and gold mention counts, in the order of ``texts``."""
    groups: dict[str, list[Prediction]] = {text: [] for text in texts}
    for p in predictions:
        if p.text not in groups:
            raise ValueError(f"expected the same texts as the reference in {dataset}, got an extra one")
        groups[p.text].append(p)
    rows = []
    for group in groups.values():
        score = official_score([p.raw for p in group], [p.gold for p in group])
        rows.append((score.n_correct, score.n_predicted, score.n_gold))
    return np.array(rows, dtype=np.int64).reshape(len(texts), 3)


def _f1(totals: np.ndarray) -> np.ndarray:
    """Micro F1 in percent from (..., 3) summed counts, with the official evaluator's 1e-10 terms
    (:func:`uner.metrics.score_normalized`'s formula, vectorised over the resamples)."""
    correct, predicted, gold = totals[..., 0], totals[..., 1], totals[..., 2]
    precision, recall = correct / (predicted + 1e-10), correct / (gold + 1e-10)
    return 100 * 2 * precision * recall / (precision + recall + 1e-10)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def _by_dataset(predictions: Sequence[Prediction]) -> dict[str, list[Prediction]]:
    groups: dict[str, list[Prediction]] = {}
    for p in predictions:
        groups.setdefault(p.dataset, []).append(p)
    return groups


def bootstrap(
    predictions: Sequence[Prediction],
    reference: Sequence[Prediction] | None = None,
    rounds: int = ROUNDS,
    seed: int = SEED,
) -> dict[str, Intervals]:
    """Intervals per dataset and for ``"average"``: F1 of ``predictions`` and, with a
    ``reference`` over the same texts, ΔF1 = F1(predictions) − F1(reference) on the same draws.

    The draws depend only on ``seed``, a dataset's position and its number of texts, so every
    variant of one bench run is resampled identically."""
    mine = _by_dataset(predictions)
    theirs = _by_dataset(reference) if reference is not None else {}
    f1_samples: dict[str, np.ndarray] = {}
    delta_samples: dict[str, np.ndarray] = {}
    for position, (dataset, group) in enumerate(mine.items()):
        texts = list(dict.fromkeys(p.text for p in (theirs.get(dataset) or group)))
        rng = np.random.default_rng([seed, position])
        draws = rng.integers(0, len(texts), size=(rounds, len(texts)))
        f1_samples[dataset] = _f1(_counts_by_text(group, texts, dataset)[draws].sum(axis=1))
        if reference is not None:
            base = _f1(_counts_by_text(theirs.get(dataset, []), texts, dataset)[draws].sum(axis=1))
            delta_samples[dataset] = f1_samples[dataset] - base
    if f1_samples:
        f1_samples[AVERAGE] = np.mean(list(f1_samples.values()), axis=0)
        if reference is not None:
            delta_samples[AVERAGE] = np.mean([delta_samples[d] for d in mine], axis=0)
    return {
        name: Intervals(_interval(samples), _interval(delta_samples[name]) if reference is not None else None)
        for name, samples in f1_samples.items()
    }


def changed_answers(predictions: Sequence[Prediction], reference: Sequence[Prediction]) -> ChangedAnswers:
    """How ``predictions`` differ from ``reference`` query by query (matched by dataset and id:
    ids are only unique within a data file)."""
    by_id = {(p.dataset, p.id): p for p in reference}
    queries = gained = lost = 0
    for p in predictions:
        mine, theirs = set(parse_normalized(p.raw)), set(parse_normalized(by_id[p.dataset, p.id].raw))
        queries += mine != theirs
        gained += len(mine - theirs)
        lost += len(theirs - mine)
    return ChangedAnswers(queries, gained, lost)
