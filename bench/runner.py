"""Running one variant over a query set: raw answers, token counts and wall time per query."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from runtimes.base import GenerativeExtractor
from runtimes.eval_data import Query
from runtimes.parsing import parse_answer


@dataclass
class Prediction:
    """One query's outcome; ``predictions-<variant>.jsonl`` holds one of these per line."""

    id: str
    dataset: str
    text: str
    label: str
    gold: str
    raw: str
    answers: list[str]
    prompt_tokens: int
    generated_tokens: int
    seconds: float
    prefill_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def sample_queries(queries: Sequence[Query], limit: int | None, seed: int = 0) -> list[Query]:
    """A deterministic sample (same for every variant), kept in file order."""
    if limit is None or limit >= len(queries):
        return list(queries)
    chosen = set(random.Random(seed).sample(range(len(queries)), limit))
    return [query for index, query in enumerate(queries) if index in chosen]


@dataclass(frozen=True)
class TimedAnswer:
    raw: str
    prompt_tokens: int
    generated_tokens: int
    seconds: float
    prefill_seconds: float


def timed_answer(extractor: GenerativeExtractor, text: str, label: str) -> TimedAnswer:
    """One query through a backend: the engine's own prompt ids, greedy generation, decode."""
    prompt = extractor.prompt_ids(text, label)
    started = time.perf_counter()
    generated = extractor.generate(prompt)
    seconds = time.perf_counter() - started
    raw = extractor.decode(generated).strip()
    return TimedAnswer(raw, len(prompt), len(generated), seconds, extractor.last_prefill_seconds or 0.0)


def predict(
    extractor,
    queries: Sequence[Query],
    dataset: str,
    on_query: Callable[[], None] | None = None,
) -> list[Prediction]:
    """Greedy answers to ``queries``, timed one by one. ``extractor`` is a backend or a naive
    baseline (anything with ``timed_answer(text, label)``)."""
    answer = getattr(extractor, "timed_answer", None) or (lambda text, label: timed_answer(extractor, text, label))
    predictions = []
    for query in queries:
        result = answer(query.text, query.label)
        predictions.append(Prediction(
            query.id, dataset, query.text, query.label, query.gold, result.raw, parse_answer(result.raw),
            result.prompt_tokens, result.generated_tokens, result.seconds, result.prefill_seconds,
        ))
        if on_query:
            on_query()
    return predictions
