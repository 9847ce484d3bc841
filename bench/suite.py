"""One bench run: reference, candidates and naive baselines over the same queries, side by side.

Each variant runs in its own child process, so its load time and peak RSS are its own and a
large model is gone before the next one loads.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from uner.bench.machine import artifact_bytes, stored_weight_bytes
from uner.bench.reference_models import resolve_reference
from uner.bench.runner import Prediction, predict, sample_queries
from uner.engine import EngineStats
from uner.errors import InputError, UnerError
from uner.eval_data import Query, read_queries
from uner.loading import detect_backend, load, resolve_model

UNGUARDED, CLOSED = "no-loop-guard", "close-loops"  # name suffixes of the guard's comparison runs
FRESH_STEM = "fresh-stem"  # the suffix of a run that encodes the prompt stem again for every text
#: each twin's options: a variant run once more with them, as ``NAME twin``
TWINS = {UNGUARDED: {"loop_guard": False}, CLOSED: {"close_loops": True}, FRESH_STEM: {"reuse_stem": False}}


@dataclass(frozen=True)
class VariantSpec:
    """``kind``: ``backend`` (any artifact :func:`runtimes.load` accepts), ``hf-naive`` or ``llamacpp-naive``."""

    name: str
    path: str
    kind: str = "backend"
    options: dict = field(default_factory=dict)


@dataclass
class VariantRun:
    spec: VariantSpec
    backend: str
    predictions: list[Prediction]
    load_seconds: float
    peak_rss_bytes: int
    size_bytes: int
    weights_bytes: int
    stored_weight_bytes: int | None = None
    parameters: int | None = None  # counted on torch runs (the reference): the bits-per-weight denominator
    engine: dict | None = None  # where the backend's time went (:func:`engine_profile`); None for baselines


def is_twin(run: VariantRun) -> bool:
    """Whether ``run`` is another variant's comparison run (``NAME twin``, :data:`TWINS`)."""
    return run.spec.name.endswith(tuple(f" {twin}" for twin in TWINS))


def twin_of(runs: list[VariantRun], run: VariantRun, twin: str) -> VariantRun | None:
    """``run``'s comparison run ``twin`` among ``runs``, if the bench made one."""
    return next((other for other in runs if other.spec.name == f"{run.spec.name} {twin}"), None)


def paired_predictions(run: VariantRun, other: VariantRun) -> list[tuple[Prediction, Prediction]]:
    """Each of ``run``'s predictions with ``other``'s for the same query."""
    theirs = {(p.dataset, p.id): p for p in other.predictions}
    return [(p, theirs[(p.dataset, p.id)]) for p in run.predictions]


def engine_profile(stats: list[EngineStats]) -> dict | None:
    """A variant's :class:`~uner.engine.EngineStats` over its datasets, summed."""
    if not stats:
        return None
    stops: Counter = Counter()
    for one in stats:
        stops.update(one.stops)
    steps = sum(s.steps for s in stats)
    return {
        "prefill_seconds": sum(s.prefill_seconds for s in stats),
        "decode_seconds": sum(s.step_seconds for s in stats),
        "decode_steps": steps,
        "runaway_steps": sum(s.runaway_steps for s in stats),
        "rows_per_step": sum(s.rows for s in stats) / steps if steps else None,
        "stops": dict(sorted(stops.items())),
    }


def load_datasets(paths: list[Path], limit: int | None, seed: int = 0) -> dict[str, list[Query]]:
    """Queries per dataset (named after the file), each sampled to ``limit`` deterministically."""
    datasets: dict[str, list[Query]] = {}
    for path in paths:
        name = Path(path).stem
        if name in datasets:
            raise InputError(f"expected data files with distinct names, got {name} twice")
        datasets[name] = sample_queries(read_queries(path), limit, seed)
    return datasets


def _build(spec: VariantSpec, threads: int | None, max_new_tokens: int):
    if spec.kind == "hf-naive":
        from uner.bench.baselines import NaiveTransformers

        return NaiveTransformers(spec.path, threads, max_new_tokens)
    if spec.kind == "llamacpp-naive":
        from uner.bench.baselines import NaiveLlamaCpp

        return NaiveLlamaCpp(spec.path, threads, max_new_tokens)
    return load(spec.path, max_new_tokens=max_new_tokens, n_threads=threads, **spec.options)


def _parameters(extractor) -> int | None:
    model = getattr(extractor, "model", None)
    if model is not None and hasattr(model, "parameters"):
        return sum(p.numel() for p in model.parameters())
    return None


def _weights_bytes(extractor, path: str) -> int:
    """Bytes of weights a decode step reads: torch computes in fp32 whatever the file holds."""
    model = getattr(extractor, "model", None)
    if model is not None and hasattr(model, "parameters"):
        return sum(p.numel() * p.element_size() for p in model.parameters())
    return artifact_bytes(path)


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this child process when the bench that spawned it is gone (killed with SIGTERM or
    SIGKILL, it cannot end its children): an orphaned variant would keep both cores busy and
    skew every later measurement on the machine."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_variant(
    spec: VariantSpec,
    datasets: dict[str, list[Query]],
    threads: int | None,
    max_new_tokens: int,
    parent: int | None = None,
) -> VariantRun:
    from tqdm import tqdm

    if parent is not None:
        _exit_with_parent(parent)
    started = time.perf_counter()
    extractor = _build(spec, threads, max_new_tokens)
    load_seconds = time.perf_counter() - started
    total = sum(map(len, datasets.values()))
    predictions: list[Prediction] = []
    stats: list[EngineStats] = []
    with tqdm(total=total, desc=spec.name, unit="q", leave=True, dynamic_ncols=True) as bar:
        for dataset, queries in datasets.items():
            predictions += predict(extractor, queries, dataset, on_query=bar.update)
            if isinstance(getattr(extractor, "stats", None), EngineStats):
                stats.append(extractor.stats)
    backend = getattr(extractor, "name", spec.kind)
    weights, parameters = _weights_bytes(extractor, spec.path), _parameters(extractor)
    extractor.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size, stored = artifact_bytes(spec.path), stored_weight_bytes(spec.path)
    return VariantRun(
        spec, backend, predictions, load_seconds, peak, size, weights, stored, parameters, engine_profile(stats)
    )


def run_variant_isolated(
    spec: VariantSpec, datasets: dict[str, list[Query]], threads: int | None, max_new_tokens: int
) -> VariantRun:
    """:func:`_run_variant` in a fresh spawned process (own RSS, own load time).

    An error the child raises is raised here as itself (a :class:`UnerError` such as
    :class:`~uner.errors.BackendUnavailable` stays one ``Error:`` line); a child that dies
    (killed for memory, a crash in a backend) is a :class:`UnerError` naming the variant."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_run_variant, spec, datasets, threads, max_new_tokens, os.getpid()).result()
    except BrokenProcessPool as exc:
        raise UnerError(
            f"expected the {spec.name} run to finish, got its process ended abruptly (out of memory, a crash "
            "in its backend, or an error it could not send back): rerun with a smaller --limit, or that variant alone"
        ) from exc


def plan_variants(
    reference: str,
    candidates: list[str],
    baselines: bool,
    per_query: bool = False,
    constraints: tuple[str, ...] = (),
    reference_options: dict | None = None,
    gguf_options: dict | None = None,
    reference_per_query: bool = False,
    twins: tuple[str, ...] = (),
) -> list[VariantSpec]:
    """The reference first (torch, on the batched engine, whose tokens are those of one prompt
    per query, or with ``reference_per_query`` on that official path itself), then each
    candidate on the batched engine (plus its per-query path and constrained runs when asked),
    then the naive baselines they call for. ``reference_options``: the reference's torch
    options (``device``, ``dtype``, ``allow_pickle``); ``gguf_options``: those of GGUF
    candidates (``kv_cache_type``). ``twins`` (keys of :data:`TWINS`) run each candidate once
    more with the twin's options, as ``NAME twin``: ``no-loop-guard`` without the loop guard
    (the reference too), ``close-loops`` reading cut lists to their last complete mention,
    ``fresh-stem`` encoding the prompt stem again for every text (the reference too)."""
    reference_path = resolve_model(resolve_reference(reference))
    if detect_backend(reference_path) != "torch":
        raise InputError(f"expected --reference to be a Hugging Face folder (run on torch), got {reference}")
    options = {"batched": not reference_per_query, **(reference_options or {})}
    specs = [VariantSpec(f"reference:{Path(reference_path).name}", str(reference_path), options=options)]
    for twin in (UNGUARDED, FRESH_STEM):
        if twin in twins:
            specs.append(VariantSpec(f"{specs[0].name} {twin}", specs[0].path, options={**options, **TWINS[twin]}))
    ggufs = []
    for candidate in candidates:
        path = resolve_model(candidate)
        own = {}
        if detect_backend(path) == "llamacpp":  # detected now: a clear error here, not in a child
            ggufs.append(path)
            own = dict(gguf_options or {})
        name = Path(path).name
        specs.append(VariantSpec(name, str(path), options=own))
        if per_query:
            specs.append(VariantSpec(f"{name} per-query", str(path), options={**own, "batched": False}))
        specs += [VariantSpec(f"{name} {kind}", str(path), options={**own, "constrain": kind}) for kind in constraints]
        specs += [VariantSpec(f"{name} {twin}", str(path), options={**own, **TWINS[twin]}) for twin in twins]
    if baselines:
        specs.append(VariantSpec("hf-naive", str(reference_path), kind="hf-naive"))
        if ggufs:
            specs.append(VariantSpec("llamacpp-naive", str(ggufs[-1]), kind="llamacpp-naive"))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError(f"expected candidates with distinct names, got {', '.join(names)}")
    return specs
