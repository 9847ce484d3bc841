"""What keeping the prompt stem's KV changed, from one bench run's ``X`` and ``X fresh-stem``.

``X`` keeps the KV of the prompt start every text shares (the system line and ``USER: Text:``)
from one text to the next; its twin ``X fresh-stem`` (``--fresh-stem``) encodes it again with
each text. The contract is the same tokens; the gain is prefill time.
"""

from __future__ import annotations

from uner.bench.suite import FRESH_STEM, VariantRun, paired_predictions, twin_of


def _prefill(run: VariantRun) -> float | None:
    return (run.engine or {}).get("prefill_seconds")


def stem_comparisons(runs: list[VariantRun]) -> list[dict]:
    """One entry per variant that has a ``fresh-stem`` twin."""
    entries = []
    for run in runs:
        fresh = twin_of(runs, run, FRESH_STEM)
        if fresh is None:
            continue
        pairs = paired_predictions(run, fresh)
        entries.append(
            {
                "name": run.spec.name,
                "queries": len(pairs),
                "raw_identical": sum(mine.raw == other.raw for mine, other in pairs),
                "prefill_seconds": {"kept": _prefill(run), "fresh": _prefill(fresh)},
                "seconds": {
                    "kept": sum(p.seconds for p in run.predictions),
                    "fresh": sum(p.seconds for p in fresh.predictions),
                },
            }
        )
    return entries


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def stem_markdown(entries: list[dict]) -> list[str]:
    """The report's prompt-stem section (empty without ``fresh-stem`` twins)."""
    if not entries:
        return []
    lines = [
        "\n## prompt stem\n",
        "Each variant (the stem's KV kept from one text to the next) against its twin that encodes the stem "
        "again for every text (*fresh-stem*), on the same queries.\n",
        "| variant | queries | raw identical | prefill s (kept / fresh) | total s (kept / fresh) |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        prefill, total = e["prefill_seconds"], e["seconds"]
        lines.append(
            f"| {e['name']} | {e['queries']} | {e['raw_identical']} / {e['queries']} | "
            f"{_seconds(prefill['kept'])} / {_seconds(prefill['fresh'])} | "
            f"{total['kept']:.1f} / {total['fresh']:.1f} |"
        )
    return lines
