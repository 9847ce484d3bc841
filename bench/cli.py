"""``uner bench``: the command, and :func:`run_bench`, the library call behind it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from uner._cli_utils import (
    AllowPickleRunOpt,
    KvCacheChoice,
    KvCacheOpt,
    QuietOpt,
    ThreadsOpt,
    backend_options,
    setup_logging,
)
from uner.atomic import write_text_atomic
from uner.base import DEFAULT_MAX_NEW_TOKENS
from uner.bench.guard_parity import guard_comparisons
from uner.bench.machine import machine_info, versions
from uner.bench.report import markdown, plots, summarize, write_predictions
from uner.bench.stem_parity import stem_comparisons
from uner.bench.suite import CLOSED, FRESH_STEM, UNGUARDED, load_datasets, plan_variants, run_variant_isolated
from uner.constraints import CONSTRAINTS, check_constraint
from uner.errors import InputError

logger = logging.getLogger(__name__)

BENCH_EXAMPLES = """
Examples:
  uner bench --reference uniner-smol-135m --candidate out/uniner-smol-135m.Q8_0.gguf \\
      --candidate out/onnx-int4 --data ../shared/data/crossner_ai/CrossNER_AI.json --limit 300 --out bench/results/smol
  uner bench --reference ./UniNER-7B-type --candidate out/UniNER-7B-type.Q4_K_M.gguf \\
      --data ../shared/data/conll2003/test.txt --limit 100 --out bench/results/7b
"""


def parse_limit(value: str) -> int | None:
    """``--limit``: a positive number of queries, or ``all`` (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise InputError(f"expected --limit to be a positive number of queries or 'all', got {value!r}")
    return limit


def run_bench(
    reference: str,
    candidates: list[str],
    data: list[Path],
    out: Path,
    *,
    limit: int | None = None,
    baselines: bool = True,
    threads: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    per_query: bool = False,
    constraints: tuple[str, ...] = (),
    reference_options: dict | None = None,
    gguf_options: dict | None = None,
    reference_per_query: bool = False,
    twins: tuple[str, ...] = (),
) -> dict:
    """Run the bench and write results.json, predictions-*.jsonl, report.md and plots to ``out``
    (each written whole or not at all; results.json last).

    ``limit``: queries per data file (None: all); ``reference_per_query``: run the reference one
    prompt per query (the official path) instead of on the batched engine (same tokens, faster).
    ``reference_options``: torch options of the reference (``{"device": "cuda", "dtype": "float16"}``;
    default float32 on CPU); ``gguf_options``: options of GGUF candidates (``{"kv_cache_type": "f32"}``);
    ``twins``: comparison runs of each variant (:data:`uner.bench.suite.TWINS`)."""
    if not data:
        raise InputError("expected at least one --data file, got none")
    datasets = load_datasets(data, limit)  # first: a bad data file is an error before any model is built
    specs = plan_variants(
        reference,
        candidates,
        baselines,
        per_query,
        tuple(check_constraint(c) for c in constraints),
        reference_options,
        gguf_options,
        reference_per_query,
        twins,
    )
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or os.cpu_count() or 1
    runs = [run_variant_isolated(spec, datasets, threads, max_new_tokens) for spec in specs]
    machine = machine_info(threads)
    results = {
        "versions": versions(),
        "machine": machine,
        "data": {name: len(queries) for name, queries in datasets.items()},
        "queries": sum(map(len, datasets.values())),
        "limit": limit,
        "max_new_tokens": max_new_tokens,
        "texts": {name: len({q.text for q in queries}) for name, queries in datasets.items()},
        "variants": summarize(runs, machine["read_bandwidth_bytes_per_s"]),
        "loop_guard": guard_comparisons(runs),
        "prompt_stem": stem_comparisons(runs),
    }
    # every file goes to a temporary name and is renamed when complete; results.json last, so
    # one that is there belongs to a bench that finished writing everything else
    write_predictions(out, runs)
    write_text_atomic(out / "report.md", markdown(results))
    plots(out, results["variants"])
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def bench(
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            "-r",
            help="Hugging Face folder, Hub id or reference name (uniner-smol-135m), run on torch.",
            show_default=False,
        ),
    ],
    data: Annotated[
        list[Path],
        typer.Option("--data", "-d", help="UniNER eval JSON or CoNLL/BIO file (repeatable).", show_default=False),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder for results.json, report.md, plots.", show_default=False)
    ],
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            "-c",
            help="An artifact to compare: GGUF file, ONNX folder, HF folder (repeatable).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        str,
        typer.Option(
            "--limit",
            help="Queries per data file, as a deterministic sample of whole texts, or 'all'.",
        ),
    ] = "all",
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Skip the naive per-query baselines.")] = False,
    per_query: Annotated[
        bool,
        typer.Option("--per-query", help="Also run every candidate one prompt per query (its own unbatched path)."),
    ] = False,
    reference_per_query: Annotated[
        bool,
        typer.Option(
            "--reference-per-query",
            help="Run the reference one prompt per query (the official path; same tokens as batched, slower).",
        ),
    ] = False,
    constrain: Annotated[
        list[str] | None,
        typer.Option(
            "--constrain",
            help=f"Also run every candidate with this output constraint ({', '.join(CONSTRAINTS)}; repeatable).",
            show_default=False,
        ),
    ] = None,
    unguarded: Annotated[
        bool,
        typer.Option(
            "--unguarded",
            help="Also run the reference and every candidate without the loop guard, and report whether every "
            "answer parses the same.",
        ),
    ] = False,
    close_loops: Annotated[
        bool,
        typer.Option(
            "--close-loops",
            help="Also run every candidate reading answers cut inside their list up to the last complete mention.",
        ),
    ] = False,
    fresh_stem: Annotated[
        bool,
        typer.Option(
            "--fresh-stem",
            help="Also run the reference and every candidate encoding the prompt's shared start again for every "
            "text (instead of keeping its KV).",
        ),
    ] = False,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Generation limit per answer.")
    ] = DEFAULT_MAX_NEW_TOKENS,
    reference_device: Annotated[
        str,
        typer.Option(
            "--reference-device", help="Torch device of the reference: cpu, cuda, auto (cuda when available)."
        ),
    ] = "cpu",
    reference_dtype: Annotated[
        str,
        typer.Option(
            "--reference-dtype",
            help="Reference dtype: float32, float16, bfloat16, auto (float16 on a GPU, float32 on CPU).",
        ),
    ] = "float32",
    kv_cache: KvCacheOpt = KvCacheChoice.auto,
    allow_pickle: AllowPickleRunOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Official UniNER F1, agreement with the reference, and speed against naive baselines, in one run."""
    setup_logging(quiet)
    results = run_bench(
        reference,
        candidate or [],
        data,
        out,
        limit=parse_limit(limit),
        baselines=not no_baselines,
        threads=threads,
        max_new_tokens=max_new_tokens,
        per_query=per_query,
        constraints=tuple(constrain or ()),
        reference_options={
            "device": reference_device,
            "dtype": reference_dtype,
            **backend_options(KvCacheChoice.auto, allow_pickle),
        },
        gguf_options=backend_options(kv_cache, False),
        reference_per_query=reference_per_query,
        twins=tuple(
            name for name, asked in ((UNGUARDED, unguarded), (CLOSED, close_loops), (FRESH_STEM, fresh_stem)) if asked
        ),
    )
    if not quiet:
        typer.echo(markdown(results))
    typer.echo(str(out / "results.json"))


bench.epilog = BENCH_EXAMPLES
