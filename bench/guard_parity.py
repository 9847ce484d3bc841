"""What the loop guard changed, from one bench run's guarded and unguarded twins.

For each variant ``X`` run with ``--unguarded`` the bench also ran ``X no-loop-guard``: the
same queries with every token generated. The guard's contract is that every answer *parses*
to the same mentions; this counts that, and how the raw answers that do differ were cut.
``X close-loops`` (``--close-loops``) is scored against ``X``: the F1 that reading cut lists
to their last complete mention gains or loses against the official reading.
"""

from __future__ import annotations

from collections import Counter

from uner.bench.scoring import score_by_dataset
from uner.bench.suite import CLOSED, UNGUARDED, VariantRun, is_twin, paired_predictions, twin_of
from uner.toolkit.gates import with_interval


def _steps(run: VariantRun) -> dict:
    engine = run.engine or {}
    steps = engine.get("decode_steps")
    return {
        "generated_tokens": sum(p.generated_tokens for p in run.predictions),
        "decode_steps": steps,
        "runaway_step_share": engine.get("runaway_steps", 0) / steps if steps else None,
        "seconds": sum(p.seconds for p in run.predictions),
    }


def guard_comparisons(runs: list[VariantRun]) -> list[dict]:
    """One entry per variant that has a ``no-loop-guard`` and/or a ``close-loops`` twin."""
    entries = []
    for run in runs:
        if is_twin(run):
            continue
        unguarded, closed = twin_of(runs, run, UNGUARDED), twin_of(runs, run, CLOSED)
        if unguarded is None and closed is None:
            continue
        entry: dict = {"name": run.spec.name, "queries": len(run.predictions), "guarded": _steps(run)}
        if unguarded is not None:
            pairs = paired_predictions(run, unguarded)
            differ = [(mine, full) for mine, full in pairs if mine.raw != full.raw]
            entry.update(
                unguarded=_steps(unguarded),
                parsed_identical=sum(mine.answers == full.answers for mine, full in pairs),
                raw_identical=len(pairs) - len(differ),
                raw_differ_by_stop=dict(Counter(mine.stop or "?" for mine, _ in differ)),
                parsed_differ=[
                    {"id": mine.id, "dataset": mine.dataset, "guarded": mine.raw, "unguarded": full.raw[:300]}
                    for mine, full in pairs
                    if mine.answers != full.answers
                ][:20],
            )
        if closed is not None:
            score = score_by_dataset(closed.predictions, run.predictions)["average"]
            entry["close_loops"] = {
                "f1": score.f1,
                "delta_f1": score.delta_f1,
                "delta_f1_ci95": list(score.delta_f1_ci95),
                "changed_queries": sum(a.answers != b.answers for a, b in zip(closed.predictions, run.predictions)),
            }
        entries.append(entry)
    return entries


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def guard_markdown(entries: list[dict]) -> list[str]:
    """The report's loop-guard section (empty without comparison runs)."""
    if not entries:
        return []
    lines = [
        "\n## loop guard\n",
        "Each variant against its own twin run without the guard (*no-loop-guard*) on the same queries. "
        "*parsed identical*: answers the official parser reads as the same mentions (the guard's contract); "
        "*raw differ*: answers whose text differs, by the rule that cut them (*settled*: after the list closed "
        "or once it could no longer be a list; *loop*: a repeating cycle). *runaway share*: decode steps in "
        "which every row was an answer that went on to the token limit.\n",
        "| variant | queries | parsed identical | raw differ (by rule) | tokens (guard / none) | decode steps "
        "(guard / none) | runaway share (guard / none) | seconds (guard / none) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        if "unguarded" not in e:
            continue
        g, u = e["guarded"], e["unguarded"]
        rules = ", ".join(f"{rule} {count}" for rule, count in sorted(e["raw_differ_by_stop"].items())) or "none"
        lines.append(
            f"| {e['name']} | {e['queries']} | {e['parsed_identical']} / {e['queries']} | "
            f"{e['queries'] - e['raw_identical']} ({rules}) | {g['generated_tokens']} / {u['generated_tokens']} | "
            f"{g['decode_steps']} / {u['decode_steps']} | {_share(g['runaway_step_share'])} / "
            f"{_share(u['runaway_step_share'])} | {g['seconds']:.1f} / {u['seconds']:.1f} |"
        )
    closed = [e for e in entries if "close_loops" in e]
    if closed:
        lines += [
            "\n*close-loops* reads an answer cut inside its list up to its last complete mention; against the "
            "official reading of the same guarded run (paired bootstrap, 95 %):\n",
            "| variant | F1 with close-loops | ΔF1 vs official reading | queries changed |",
            "|---|---|---|---|",
        ]
        for e in closed:
            c = e["close_loops"]
            lines.append(
                f"| {e['name']} | {c['f1']:.2f} | {with_interval(c['delta_f1'], c['delta_f1_ci95'], '+.2f')} | "
                f"{c['changed_queries']} |"
            )
    return lines
