"""Corpus extraction on Ray Data: a ``Dataset`` of ``{id, text}`` rows to ``{id, entities}`` rows,
on a laptop or a cluster (extra ``uner-toolkit[ray]``).

>>> import ray, uner.distributed as ud  # doctest: +SKIP
>>> ds = ray.data.read_json("corpus/")  # doctest: +SKIP
>>> out = ud.extract_dataset(ds, model="org/name:q4_k_m", labels=["person"], workers=8)  # doctest: +SKIP
>>> out.write_parquet("out/")  # doctest: +SKIP

Each worker is an actor that loads the model once (a GGUF file, an ONNX folder, or
``org/name:variant`` pulled on its node into the Hugging Face cache and sha256-checked) and reads
its batches through the batched engine, reserving as many CPUs as it runs threads.
:func:`extract_files` adds what ``uner extract --ray`` needs: files or globs in, a folder of
Parquet or JSON-lines part files out, resumable and exactly-once (:mod:`uner.distributed_sink`).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray

from uner.checks import check_labels, check_text
from uner.distributed_sink import FolderSink, check_folder, done_ids
from uner.errors import InputError, UnerError

logger = logging.getLogger(__name__)

ENTITY = pa.struct([("label", pa.string()), ("text", pa.string()), ("start", pa.int64()), ("end", pa.int64())])


class DocumentReader:
    """A Ray Data worker (a callable class): one model per actor, a batch of rows per call."""

    def __init__(self, model: str, labels: list[str], threads: int, backend: str, options: dict) -> None:
        from uner.loading import load

        self.labels = labels
        self.extractor = load(model, backend=backend, n_threads=threads, **options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids, texts = [], []
        for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
            try:
                texts.append(check_text(text))
                ids.append(doc_id)
            except UnerError as exc:  # as `uner extract --output`: skipped with a warning, the rest go on
                logger.warning("skipping document %r: %s", doc_id, exc)
        entities = [
            [entity.to_dict() for entity in extraction.entities]
            for extraction in self.extractor.run_many(texts, self.labels)
        ]
        id_type = batch.schema.field("id").type
        return pa.table({"id": pa.array(ids, type=id_type), "entities": pa.array(entities, pa.list_(ENTITY))})


def extract_dataset(
    ds: ray.data.Dataset,
    model: str,
    labels: Sequence[str],
    workers: int = 1,
    threads_per_worker: int = 1,
    batch_size: int = 16,
    backend: str = "auto",
    **options,
) -> ray.data.Dataset:
    """``ds``'s ``{id, text}`` rows as ``{id, entities: [{label, text, start, end}]}`` rows.

    Args:
        workers: actors, each holding one copy of the model.
        threads_per_worker: threads each actor runs (and CPUs it reserves).
        batch_size: rows per call: texts an actor's engine decodes together.
        **options: :func:`uner.load`'s decoding and backend options (``max_new_tokens``...).
    """
    labels = check_labels(labels)
    if workers < 1 or threads_per_worker < 1:
        raise InputError(f"expected workers and threads_per_worker >= 1, got {workers} and {threads_per_worker}")
    missing = {"id", "text"} - set(ds.columns() or [])
    if missing:
        raise InputError(f"expected rows with 'id' and 'text', got columns {ds.columns()}")
    return ds.select_columns(["id", "text"], num_cpus=0).map_batches(
        DocumentReader,
        fn_constructor_kwargs={
            "model": str(model),
            "labels": labels,
            "threads": threads_per_worker,
            "backend": backend,
            "options": options,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=workers,
        num_cpus=threads_per_worker,
        # a killed worker comes back and its batches run again: no document is lost
        max_restarts=-1,
        max_task_retries=-1,
    )


def input_files(patterns: Sequence[str]) -> list[str]:
    """Every file the patterns (paths or globs) name, in order, each once."""
    files: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [str(pattern)]
        if not found or not all(Path(f).is_file() for f in found):
            raise InputError(f"expected input files, got {pattern}, which names none")
        files += found
    kinds = {Path(f).suffix for f in files}
    if not kinds <= {".jsonl", ".json", ".parquet"} or len(kinds) > 1 and ".parquet" in kinds:
        raise InputError(f"expected .jsonl or .parquet files (one kind), got {', '.join(sorted(kinds))}")
    return list(dict.fromkeys(files))


#: reading, filtering and writing files reserve no CPU: the workers reserve what they compute
#: with, and a read task waiting for a CPU they hold would wait forever (2 workers x 1 thread on
#: 2 CPUs did)
_IO = {"num_cpus": 0}


def read_documents(files: Sequence[str]) -> ray.data.Dataset:
    if Path(files[0]).suffix == ".parquet":
        return ray.data.read_parquet(list(files), ray_remote_args=_IO)
    return ray.data.read_json(list(files), lines=True, ray_remote_args=_IO)


@dataclass
class DistributedRun:
    """What :func:`extract_files` did: documents written now and skipped as already done."""

    written: int
    skipped: int


def extract_files(
    inputs: Sequence[str],
    output: Path,
    model: str,
    labels: Sequence[str],
    workers: int = 1,
    threads_per_worker: int = 1,
    output_format: str = "parquet",
    **options,
) -> DistributedRun:
    """``uner extract --ray``: documents of ``inputs`` (JSONL or Parquet files or globs) to part
    files under ``output``; a rerun skips the ids already there (same labels and model only)."""
    labels = check_labels(labels)
    files = input_files(inputs)
    check_folder(output, labels, str(model))
    sink = FolderSink(output, output_format)  # checks the format before any work
    done = done_ids(output)
    ds = read_documents(files)
    if done:
        ds = ds.map_batches(_not_in, fn_kwargs={"done": done}, batch_format="pyarrow", **_IO)
    extracted = extract_dataset(ds, model, labels, workers, threads_per_worker, **options)
    extracted.write_datasink(sink, ray_remote_args=_IO)
    return DistributedRun(written=sink.written, skipped=len(done))


def _not_in(batch: pa.Table, done: list) -> pa.Table:
    ids = batch.column("id")
    return batch.filter(pc.invert(pc.is_in(ids, value_set=pa.array(done, type=ids.type))))


def run_on_ray(address: str | None, run, *args, **kwargs):
    """``run(*args, **kwargs)`` on the Ray cluster at ``address`` (``None``: a local one on this
    machine's cores, started and stopped here)."""
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return run(*args, **kwargs)
    finally:
        if started_here:
            ray.shutdown()
