"""Paired ΔF1 between two candidates of one bench run, e.g. a GGUF with an importance matrix
against the same type without one.

The bench's ΔF1 is against the reference; whether candidate A beats candidate B is a question
about their *difference*, which is much better determined than the gap between two ΔF1 intervals
suggests, because both were scored on the same texts. This reads the run's
``predictions-<variant>.jsonl`` files and resamples both with the same draws
(:func:`uner.bench.scoring.score_by_dataset`, whose bootstrap is paired).

    python -m uner.bench.compare bench/results/smol --pair model.Q4_K_M-conversations.gguf=model.Q4_K_M-none.gguf
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from uner.bench.report import predictions_file
from uner.bench.runner import Prediction
from uner.bench.scoring import score_by_dataset
from uner.bench.statistics import AVERAGE
from uner.errors import InputError, first_line
from uner.toolkit.gates import interval_text

PREFIX, SUFFIX = "predictions-", ".jsonl"


@dataclass(frozen=True)
class PairedDelta:
    """F1(candidate) − F1(baseline) on the same queries, per dataset and ``"average"``."""

    candidate: str
    baseline: str
    delta_f1: dict[str, float]
    delta_f1_ci95: dict[str, tuple[float, float]]
    changed_queries: int
    queries: int


def read_predictions(folder: Path, variant: str) -> list[Prediction]:
    """One variant's ``predictions-<variant>.jsonl`` from a bench output folder."""
    path = Path(folder) / predictions_file(variant)  # the name as the report shows it, or as the file has it
    if not path.is_file():
        known = sorted(p.name[len(PREFIX) : -len(SUFFIX)] for p in Path(folder).glob(f"{PREFIX}*{SUFFIX}"))
        raise InputError(f"expected a variant among {', '.join(known) or '(none)'} in {folder}, got {variant!r}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    fields = {"prefill_seconds": 0.0}
    return [Prediction(**{**fields, **row}) for row in rows]


def paired_delta(folder: Path, candidate: str, baseline: str) -> PairedDelta:
    """ΔF1 of ``candidate`` against ``baseline`` (two variants of the bench run in ``folder``),
    scored as the bench scores a candidate against its reference."""
    mine, theirs = read_predictions(folder, candidate), read_predictions(folder, baseline)
    if {(p.dataset, p.id) for p in mine} != {(p.dataset, p.id) for p in theirs}:
        raise InputError(f"expected {candidate} and {baseline} to answer the same queries")
    scores = score_by_dataset(mine, theirs)
    return PairedDelta(
        candidate,
        baseline,
        {name: score.delta_f1 for name, score in scores.items()},
        {name: score.delta_f1_ci95 for name, score in scores.items()},
        scores[AVERAGE].changed_answers.queries,
        len(mine),
    )


def markdown_table(deltas: list[PairedDelta]) -> str:
    """One row per pair: ΔF1 [95 % CI] on the average and on each dataset, changed answers."""
    datasets = [name for name in deltas[0].delta_f1 if name != AVERAGE] if deltas else []
    header = ["candidate", "baseline", "ΔF1 average [95 % CI]", *datasets, "changed / queries"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d in deltas:
        cells = [f"{d.delta_f1[n]:+.2f} {interval_text(d.delta_f1_ci95[n], '+.2f')}" for n in (AVERAGE, *datasets)]
        changed = f"{d.changed_queries} / {d.queries}"
        lines.append(f"| {d.candidate} | {d.baseline} | " + " | ".join(cells) + f" | {changed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uner.bench.compare", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument("folder", type=Path, help="a `uner bench --out` folder")
    parser.add_argument(
        "--pair", action="append", required=True, metavar="CANDIDATE=BASELINE", help="variant names (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        pairs = []
        for pair in args.pair:
            candidate, sep, baseline = pair.partition("=")
            if not sep or not candidate or not baseline:
                raise InputError(f"expected --pair CANDIDATE=BASELINE, got {pair!r}")
            pairs.append(paired_delta(args.folder, candidate, baseline))
    except (InputError, OSError, ValueError) as exc:
        print(f"Error: {first_line(exc)}", file=sys.stderr)
        return 1
    sys.stdout.write(markdown_table(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
