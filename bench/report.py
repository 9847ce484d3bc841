"""The bench's outputs: results.json, predictions-<variant>.jsonl, report.md and PNG plots."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from uner.atomic import atomic_path
from uner.bench.guard_parity import guard_markdown
from uner.bench.scoring import DatasetScore, score_by_dataset
from uner.bench.statistics import ROUNDS
from uner.bench.stem_parity import stem_markdown
from uner.bench.suite import VariantRun
from uner.toolkit.gates import with_interval

logger = logging.getLogger(__name__)


def _profile(run: VariantRun, seconds: float) -> dict:
    """Prefill, decode and the rest of a backend run's wall time; decode steps and their rows."""
    engine = run.engine
    if engine is None:
        return {"profile": None}
    steps = engine["decode_steps"]
    return {
        "profile": {
            **engine,
            "wall_seconds": seconds,
            "total_over_prefill": seconds / engine["prefill_seconds"] if engine["prefill_seconds"] else None,
            "runaway_step_share": engine["runaway_steps"] / steps if steps else None,
        }
    }


def _speed(run: VariantRun) -> dict:
    predictions = run.predictions
    seconds = sum(p.seconds for p in predictions)
    prefill = sum(p.prefill_seconds for p in predictions)
    generated = sum(p.generated_tokens for p in predictions)
    return {
        **_profile(run, seconds),
        "queries_per_s": len(predictions) / seconds if seconds else None,
        "prompt_tokens_per_s": sum(p.prompt_tokens for p in predictions) / prefill if prefill else None,
        "generated_tokens_per_s": generated / (seconds - prefill) if seconds - prefill > 0 else None,
        "generated_tokens": generated,
        "load_seconds": run.load_seconds,
        "peak_rss_bytes": run.peak_rss_bytes,
    }


def _average(score: DatasetScore, is_reference: bool) -> dict:
    """The headline scores of a variant; the reference's own deltas are zero by definition."""
    if is_reference:
        return {
            "f1": score.f1,
            "f1_ci95": list(score.f1_ci95),
            "delta_f1": 0.0,
            "delta_f1_ci95": [0.0, 0.0],
            "agreement": 100.0,
            "changed_answers": {"queries": 0, "entities_gained": 0, "entities_lost": 0},
        }
    return {
        "f1": score.f1,
        "f1_ci95": list(score.f1_ci95),
        "delta_f1": score.delta_f1,
        "delta_f1_ci95": list(score.delta_f1_ci95),
        "agreement": score.agreement,
        "changed_answers": score.changed_answers.to_dict(),
    }


def _bits_per_weight(run: VariantRun, parameters: int | None, is_reference: bool) -> float | None:
    """Stored weight bits per parameter of the reference model (torch runs, the reference and
    its twins among them: what they compute with). Embeddings a format stores twice count
    twice: that is what it costs."""
    if not parameters:
        return None
    computes = is_reference or run.backend == "torch" or run.stored_weight_bytes is None
    stored = run.weights_bytes if computes else run.stored_weight_bytes
    return 8 * stored / parameters


def summarize(runs: list[VariantRun], bandwidth: float) -> list[dict]:
    """One entry per variant: scores against the first run (the reference) and speed ratios
    against the naive baselines measured in the same run."""
    reference = runs[0].predictions
    parameters = runs[0].parameters
    by_name = {run.spec.name: _speed(run) for run in runs}
    variants = []
    for index, run in enumerate(runs):
        scores = score_by_dataset(run.predictions, None if index == 0 else reference)
        speed = by_name[run.spec.name]
        bound = bandwidth / run.weights_bytes if run.weights_bytes else None
        entry = {
            "name": run.spec.name,
            "path": run.spec.path,
            "backend": run.backend,
            "kind": run.spec.kind,
            **_average(scores["average"], is_reference=index == 0),
            "datasets": {name: score.to_dict() for name, score in scores.items() if name != "average"},
            **speed,
            "size_bytes": run.size_bytes,
            "bits_per_weight": _bits_per_weight(run, parameters, is_reference=index == 0),
            "weights_bytes_per_token": run.weights_bytes,
            "decode_bound_tokens_per_s": bound,
            "share_of_bound": speed["generated_tokens_per_s"] / bound
            if bound and speed["generated_tokens_per_s"]
            else None,
        }
        for baseline in ("hf-naive", "llamacpp-naive"):
            base = by_name.get(baseline, {}).get("queries_per_s")
            entry[f"x_{baseline.replace('-', '_')}"] = (
                speed["queries_per_s"] / base if base and speed["queries_per_s"] else None
            )
        own = by_name.get(f"{run.spec.name} per-query", {}).get("queries_per_s")
        entry["x_own_per_query"] = speed["queries_per_s"] / own if own and speed["queries_per_s"] else None
        variants.append(entry)
    return variants


def predictions_file(variant: str) -> str:
    """``predictions-<variant>.jsonl``, the variant's name made safe for a file name."""
    return f"predictions-{re.sub(r'[^A-Za-z0-9._-]+', '_', variant)}.jsonl"


def write_predictions(out: Path, runs: list[VariantRun]) -> None:
    """``predictions-<variant>.jsonl`` per run, each written whole or not at all."""
    for run in runs:
        with (
            atomic_path(out / predictions_file(run.spec.name)) as tmp,
            tmp.open("w", encoding="utf-8") as handle,
        ):
            for prediction in run.predictions:
                row = {
                    "id": prediction.id,
                    "dataset": prediction.dataset,
                    "text": prediction.text,
                    "label": prediction.label,
                    "gold": prediction.gold,
                    "raw": prediction.raw,
                    "answers": prediction.answers,
                    "prompt_tokens": prediction.prompt_tokens,
                    "generated_tokens": prediction.generated_tokens,
                    "seconds": round(prediction.seconds, 4),
                    "stop": prediction.stop,
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _fmt(value, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _with_interval(value, interval, spec: str) -> str:
    return "–" if value is None else with_interval(value, interval, spec)


def _changed(changed: dict | None) -> str:
    if not changed:
        return "–"
    return f"{changed['queries']} (+{changed['entities_gained']}/−{changed['entities_lost']})"


def markdown(results: dict) -> str:
    variants = results["variants"]
    datasets = list(variants[0]["datasets"])
    lines = [
        f"# uner bench\n\n{results['queries']} queries per variant ({sum(results.get('texts', {}).values())} texts); "
        f"machine: {results['machine']['cpu']}, "
        f"{results['machine']['threads_used']} threads; read bandwidth "
        f"{results['machine']['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s.\n"
    ]
    lines.append(
        "F1 and ΔF1 (against the reference, on the same queries) with 95 % intervals: paired bootstrap over "
        f"whole texts, {ROUNDS} resamples, each dataset resampled on its own. *changed*: queries whose answer "
        "set differs from the reference's (mentions gained / lost).\n"
    )
    for dataset in ["average", *datasets]:
        lines.append(f"\n## {dataset}\n")
        lines.append(
            "| variant | backend | size MB | bits/weight | F1 [95 % CI] | ΔF1 [95 % CI] | agreement % | changed (+/−) "
            "| q/s | × hf-naive | × llamacpp-naive |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for v in variants:
            score = v if dataset == "average" else v["datasets"][dataset]
            lines.append(
                f"| {v['name']} | {v['backend']} | {v['size_bytes'] / 1e6:.1f} | "
                f"{_fmt(v.get('bits_per_weight'), '.2f')} | "
                f"{_with_interval(score['f1'], score.get('f1_ci95'), '.2f')} | "
                f"{_with_interval(score.get('delta_f1'), score.get('delta_f1_ci95'), '+.2f')} | "
                f"{_fmt(score.get('agreement'))} | {_changed(score.get('changed_answers'))} | "
                f"{_fmt(v['queries_per_s'], '.2f')} | "
                f"{_fmt(v['x_hf_naive'], '.2f')} | {_fmt(v['x_llamacpp_naive'], '.2f')} |"
            )
    lines += _profile_markdown(variants)
    lines.append("\n## speed\n")
    lines.append(
        "| variant | × own per-query | tokens generated | prompt tok/s | gen tok/s | decode bound tok/s | share of "
        "bound | load s | peak RSS MB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        lines.append(
            f"| {v['name']} | {_fmt(v.get('x_own_per_query'), '.2f')} | {v['generated_tokens']} | "
            f"{_fmt(v['prompt_tokens_per_s'])} | {_fmt(v['generated_tokens_per_s'])} | "
            f"{_fmt(v['decode_bound_tokens_per_s'])} | "
            f"{_fmt(v['share_of_bound'] and 100 * v['share_of_bound'], '.0f', '%')} | "
            f"{v['load_seconds']:.1f} | {v['peak_rss_bytes'] / 1e6:.0f} |"
        )
    lines += guard_markdown(results.get("loop_guard", []))
    lines += stem_markdown(results.get("prompt_stem", []))
    return "\n".join(lines) + "\n"


def _profile_markdown(variants: list[dict]) -> list[str]:
    lines = [
        "\n## where the time went\n",
        "Per backend run: seconds encoding prompts (*prefill*) and in decode steps, wall time over prefill "
        "(1.0 = decoding free), decode steps and rows per step, the share of steps in which every row was an "
        "answer that went on to the token limit (*runaway*), and why answers ended.\n",
        "| variant | prefill s | decode s | wall s | wall / prefill | decode steps | rows/step | runaway share "
        "| answers ended by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        p = v.get("profile")
        if not p:
            continue
        stops = ", ".join(f"{reason} {count}" for reason, count in p["stops"].items())
        lines.append(
            f"| {v['name']} | {p['prefill_seconds']:.1f} | {p['decode_seconds']:.1f} | {p['wall_seconds']:.1f} | "
            f"{_fmt(p['total_over_prefill'], '.2f')} | {p['decode_steps']} | {_fmt(p['rows_per_step'], '.1f')} | "
            f"{_fmt(p['runaway_step_share'] and 100 * p['runaway_step_share'], '.1f', ' %')} | {stops} |"
        )
    return lines


def plots(out: Path, variants: list[dict]) -> list[Path]:
    """F1 vs size, and queries/s per variant, as PNG (skipped with a warning without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning('matplotlib is not installed: no plots (pip install "uner-toolkit[bench]")')
        return []
    written = []
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for v in variants:
        axes.scatter(v["size_bytes"] / 1e6, v["f1"])
        axes.annotate(
            v["name"], (v["size_bytes"] / 1e6, v["f1"]), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    axes.set(
        xscale="log",
        xlabel="size on disk (MB, log)",
        ylabel="official UniNER F1 (avg over datasets)",
        title="F1 vs size",
    )
    figure.tight_layout()
    with atomic_path(out / "f1_vs_size.png") as tmp:
        figure.savefig(tmp, dpi=120, format="png")  # the temporary name has no .png to go by
    written.append(out / "f1_vs_size.png")
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(7, 0.5 + 0.4 * len(variants)))
    names = [v["name"] for v in variants]
    axes.barh(names, [v["queries_per_s"] or 0 for v in variants])
    axes.invert_yaxis()
    axes.set(xlabel="queries/s (same queries, same run)", title="speed per variant")
    figure.tight_layout()
    with atomic_path(out / "queries_per_s.png") as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    written.append(out / "queries_per_s.png")
    plt.close(figure)
    return written
