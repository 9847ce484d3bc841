"""Choose the loop guard's thresholds on training splits, never on evaluation data.

Runs a model unguarded over whole training texts (every entity type of each), then replays
the guard with each candidate setting over the exact token streams: how many answers each
setting cuts, how many tokens it saves, and how many cut answers would parse differently from
the full answer (the number that must stay zero). The settled rule is replayed too, as a check
that it never changes a parse.

    python -m uner.bench.loop_guard_calibration MODEL -d TRAIN.txt... [--limit N] -o report.md
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from uner.atomic import write_text_atomic
from uner.bench.runner import sample_queries
from uner.engine import Job
from uner.eval_data import read_queries
from uner.loading import load
from uner.loop_guard import LOOP, AnswerGuard, LoopGuardSettings
from uner.parsing import parse_answer

REPEATS = (4, 6, 8, 12, 16)
MIN_TOKENS = (16, 32, 64)


@dataclass
class Outcome:
    """What one setting does to the calibration answers."""

    settings: LoopGuardSettings
    loops: int = 0
    settled: int = 0
    changed: int = 0
    tokens_saved: int = 0
    limit_answers_cut: int = 0


def generate_unguarded(model: str, files: Sequence[Path], limit: int | None, threads: int) -> tuple[list, object]:
    """``(ids, full answer ids)`` of every query of the sampled training texts, and the extractor."""
    ner = load(model, loop_guard=False, n_threads=threads)
    answers = []
    for path in files:
        queries = sample_queries(read_queries(path), limit)
        by_text: dict[str, list[str]] = {}
        for query in queries:
            by_text.setdefault(query.text, []).append(query.label)
        texts = list(by_text)
        jobs = [Job([ner.prompt_ids(text, label) for label in by_text[text]], text) for text in texts]
        for _, outputs in sorted(ner.generate_jobs(jobs), key=lambda item: item[0]):
            answers += outputs
    return answers, ner


def replay(ner, answers: list[list[int]], settings: LoopGuardSettings) -> Outcome:
    outcome = Outcome(settings)
    for ids in answers:
        guard = AnswerGuard(ner._table(), settings)
        for index, token in enumerate(ids):
            reason = guard.feed(token)
            if reason is None:
                continue
            cut = ids[: index + 1]
            if reason == LOOP:
                outcome.loops += 1
                outcome.limit_answers_cut += len(ids) >= ner.max_new_tokens
            else:
                outcome.settled += 1
            outcome.tokens_saved += len(ids) - len(cut)
            if parse_answer(ner.decode(cut).strip()) != parse_answer(ner.decode(ids).strip()):
                outcome.changed += 1
            break
    return outcome


def longest_cycle(ids: Sequence[int], max_period: int = 48, min_tokens: int = 16) -> float:
    """The most back-to-back repeats of one block (covering ``min_tokens`` or more) anywhere in ``ids``."""
    streak, best = [0] * (max_period + 1), 0.0
    for end in range(len(ids)):
        for period in range(1, min(max_period, end) + 1):
            streak[period] = streak[period] + 1 if ids[end] == ids[end - period] else 0
            covered = streak[period] + period
            if covered >= min_tokens:
                best = max(best, covered / period)
    return best


def report(model: str, files: Sequence[Path], answers: list[list[int]], ner, outcomes: list[Outcome]) -> str:
    limit_hits = sum(len(ids) >= ner.max_new_tokens for ids in answers)
    closed = max((longest_cycle(ids) for ids in answers if len(ids) < ner.max_new_tokens), default=0.0)
    runaway = sorted(longest_cycle(ids) for ids in answers if len(ids) >= ner.max_new_tokens)
    lines = [
        f"# Loop guard calibration: {Path(model).name}",
        "",
        f"Training files: {', '.join(str(f) for f in files)}",
        f"{len(answers)} answers, {sum(map(len, answers))} tokens, {limit_hits} at the {ner.max_new_tokens}-token "
        "limit (unguarded).",
        f"Longest cycle (repeats of one block over 16+ tokens) in an answer that ended before the limit: {closed:.1f}; "
        f"in answers at the limit: {', '.join(f'{r:.1f}' for r in runaway) or 'none'}.",
        "",
        "| min repeats | min tokens | loop cuts | at the limit | settled cuts | parses changed | tokens saved |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        s = o.settings
        lines.append(
            f"| {s.min_repeats} | {s.min_tokens} | {o.loops} | {o.limit_answers_cut} | {o.settled} | {o.changed} "
            f"| {o.tokens_saved} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("-d", "--data", type=Path, action="append", required=True, help="training split (BIO)")
    parser.add_argument("--limit", type=int, default=500, help="queries per file (whole texts)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    answers, ner = generate_unguarded(args.model, args.data, args.limit, args.threads)
    # the token streams, so other settings can be replayed without generating again
    write_text_atomic(args.out.with_suffix(".ids.jsonl"), "".join(json.dumps(ids) + "\n" for ids in answers))
    outcomes = [
        replay(ner, answers, LoopGuardSettings(min_repeats=r, min_tokens=t))
        for r, t in itertools.product(REPEATS, MIN_TOKENS)
    ]
    write_text_atomic(args.out, report(args.model, args.data, answers, ner, outcomes))
    print(args.out.read_text(encoding="utf-8"))
    ner.close()


if __name__ == "__main__":
    main()
