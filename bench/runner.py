"""Running one variant over a query set: raw answers, token counts and wall time per query."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from uner.base import GenerativeExtractor
from uner.engine import Job
from uner.eval_data import Query
from uner.parsing import parse_answer


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
    stop: str | None = None  # eos, limit, settled or loop (None: a naive baseline's answer)

    def to_dict(self) -> dict:
        return asdict(self)


def sample_queries(queries: Sequence[Query], limit: int | None, seed: int = 0) -> list[Query]:
    """A deterministic sample of whole texts (every type asked of a chosen text, so the batched
    engine sees real workloads) holding at most ``limit`` queries (at least one text), in file
    order; the same for every variant."""
    by_text: dict[str, list[int]] = {}
    for index, query in enumerate(queries):
        by_text.setdefault(query.text, []).append(index)
    if limit is None or limit >= len(queries):
        return list(queries)
    groups = list(by_text.values())
    chosen: set[int] = set()
    for group in random.Random(seed).sample(groups, len(groups)):
        if chosen and len(chosen) + len(group) > limit:
            continue
        chosen.update(group)
        if len(chosen) == limit:
            break
    return [query for index, query in enumerate(queries) if index in chosen]


@dataclass(frozen=True)
class TimedAnswer:
    raw: str
    prompt_tokens: int
    generated_tokens: int
    seconds: float
    prefill_seconds: float
    stop: str | None = None


def _engine_answers(
    extractor: GenerativeExtractor, by_text: dict[str, list[Query]], on_query
) -> list[list[TimedAnswer]]:
    """Every text's queries through the backend's own path (batched engine, or per query when
    the extractor is set so), timed as a whole: the engine decodes several texts at once, so
    time is split evenly over the queries."""
    texts = list(by_text)
    prompts = [[extractor.prompt_ids(text, query.label) for query in by_text[text]] for text in texts]
    jobs = (Job(text_prompts, text) for text_prompts, text in zip(prompts, texts))
    started = time.perf_counter()
    outputs: dict[int, list[list[int]]] = {}
    for index, ids in extractor.generate_jobs(jobs):
        outputs[index] = ids
        if on_query:
            on_query(len(ids))
    count = sum(map(len, prompts))
    seconds = (time.perf_counter() - started) / count
    prefill = extractor.stats.prefill_seconds / count
    return [
        [
            TimedAnswer(extractor.answer_text(ids), len(prompt), len(ids), seconds, prefill, extractor.stop_reason(ids))
            for prompt, ids in zip(prompts[index], outputs[index])
        ]
        for index in range(len(texts))
    ]


def predict(
    extractor,
    queries: Sequence[Query],
    dataset: str,
    on_query: Callable[[int], None] | None = None,
) -> list[Prediction]:
    """Greedy answers to ``queries``. A backend answers through :func:`_engine_answers`; a naive
    baseline (anything with ``timed_answer(text, label)``) query by query. ``prompt_tokens`` is
    each query's own prompt length, so prompt tok/s of the batched engine is effective
    throughput (shared prefixes are encoded once)."""
    by_text: dict[str, list[Query]] = {}
    for query in queries:
        by_text.setdefault(query.text, []).append(query)
    naive = getattr(extractor, "timed_answer", None)
    if naive is None:
        answers = _engine_answers(extractor, by_text, on_query)
    else:
        answers = []
        for group in by_text.values():
            answers.append([naive(query.text, query.label) for query in group])
            if on_query:
                on_query(len(group))
    predictions = []
    for group, results in zip(by_text.values(), answers):
        for query, result in zip(group, results):
            predictions.append(
                Prediction(
                    query.id,
                    dataset,
                    query.text,
                    query.label,
                    query.gold,
                    result.raw,
                    parse_answer(result.raw),
                    result.prompt_tokens,
                    result.generated_tokens,
                    result.seconds,
                    result.prefill_seconds,
                    result.stop,
                )
            )
    return predictions
