"""A fixed speed workload for ``uner bench``: N whole texts x the first K entity types of each.

The engine's speed depends on the shape of the work (types per text, how long the answers
run), so the speed targets name their workloads; this writes one as a UniNER eval JSON that
``uner bench -d`` reads like the official files. Texts come from an official eval file, chosen
deterministically among those with at least K types, leaving out the texts of the bench's own
sample at ``--skip-limit`` (so the workload is *other* texts than the main run's). The output
copies texts of research-licence data: write it outside the repository.

    python -m uner.bench.workload ../shared/data/crossner_ai/CrossNER_AI.json /tmp/w80.json \\
        --texts 10 --types 8 --skip-limit 120
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

from uner.atomic import write_text_atomic
from uner.bench.runner import sample_queries
from uner.eval_data import Query, read_queries


def choose_workload(
    queries: Sequence[Query], texts: int, types: int, skip: Sequence[Query] = (), seed: int = 1
) -> list[Query]:
    """``texts`` whole texts with at least ``types`` types, not among ``skip``'s, in file order,
    each with its first ``types`` queries."""
    by_text: dict[str, list[Query]] = {}
    for query in queries:
        by_text.setdefault(query.text, []).append(query)
    skipped = {query.text for query in skip}
    eligible = [text for text, group in by_text.items() if len(group) >= types and text not in skipped]
    if len(eligible) < texts:
        raise SystemExit(f"Error: only {len(eligible)} texts have {types}+ types outside the skipped sample")
    chosen = set(random.Random(seed).sample(eligible, texts))
    return [query for text, group in by_text.items() if text in chosen for query in group[:types]]


def sample_texts(paths: Sequence[Path], limit: int | None) -> list[tuple[str, list[str]]]:
    """(text, its labels) of the bench's sample at ``limit`` in each file, in file order."""
    texts = []
    for path in paths:
        by_text: dict[str, list[str]] = {}
        for query in sample_queries(read_queries(path), limit):
            by_text.setdefault(query.text, []).append(query.label)
        texts += list(by_text.items())
    return texts


def sample_arguments(description: str, model_help: str) -> argparse.ArgumentParser:
    """The arguments the sample measurements share: a model, data files, limit, threads, output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", help=model_help)
    parser.add_argument("-d", "--data", type=Path, action="append", required=True)
    parser.add_argument("--limit", type=int, default=120, help="the bench's --limit: queries per data file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", "--out", type=Path, required=True, help="the JSON to write")
    return parser


def to_uniner_json(queries: Sequence[Query]) -> list[dict]:
    """Queries as the official eval files write them (one conversation per query)."""
    return [
        {
            "id": query.id,
            "conversations": [
                {"from": "human", "value": f"Text: {query.text}"},
                {"from": "gpt", "value": "I've read this text."},
                {"from": "human", "value": f"What describes {query.label} in the text?"},
                {"from": "gpt", "value": query.gold},
            ],
        }
        for query in queries
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="an official UniNER eval JSON")
    parser.add_argument("out", type=Path, help="the workload JSON to write (outside the repository)")
    parser.add_argument("--texts", type=int, default=10)
    parser.add_argument("--types", type=int, default=8)
    parser.add_argument("--skip-limit", type=int, default=0, help="leave out the bench's sample at this --limit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    queries = read_queries(args.source)
    skip = sample_queries(queries, args.skip_limit) if args.skip_limit else []
    chosen = choose_workload(queries, args.texts, args.types, skip, args.seed)
    write_text_atomic(args.out, json.dumps(to_uniner_json(chosen), indent=1) + "\n")
    print(f"{args.out}: {len(chosen)} queries, {args.texts} texts x {args.types} types")


if __name__ == "__main__":
    main()
