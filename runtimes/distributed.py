"""Corpus extraction on Ray Data: a ``Dataset`` of ``{id, text}`` rows to ``{id, entities}`` rows,
on a laptop or a cluster (extra ``uner-toolkit[ray]``).

>>> import ray, uner.distributed as ud  # doctest: +SKIP
>>> ds = ray.data.read_json("corpus/", num_cpus=0)  # the workers reserve the CPUs  # doctest: +SKIP
>>> out = ud.extract_dataset(ds, model="org/name:q4_k_m", labels=["person"], workers=8)  # doctest: +SKIP
>>> out.write_parquet("out/")  # doctest: +SKIP

Each worker is an actor that loads the model once (a GGUF file, an ONNX folder, or
``org/name:variant`` pulled on its node into the Hugging Face cache and sha256-checked) and reads
its batches through the batched engine, reserving as many CPUs as it runs threads.
:func:`extract_files` adds what ``uner extract --ray`` needs: files or globs in, a folder of
Parquet or JSON-lines part files out, resumable and exactly-once (:mod:`uner.distributed_sink`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray

from uner.checks import check_labels
from uner.corpus import logs_beside
from uner.distributed_inputs import count_documents, input_files, input_kind, read_documents
from uner.distributed_session import ray_error_message
from uner.distributed_sink import PartWriter, check_folder, done_ids
from uner.errors import DistributedError, InputError
from uner.inputs import make_document

logger = logging.getLogger(__name__)

ENTITY = pa.struct([("label", pa.string()), ("text", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
ENTITIES = pa.list_(ENTITY)


#: a reader's rows with ``with_problems``: the reason a document could not be read, else null
PROBLEM = "problem"


class DocumentReader:
    """A Ray Data worker (a callable class): one model per actor, a batch of rows per call.

    Rows whose id is in ``done`` are dropped (a resumed run; compared as strings, as ids are read
    from JSON either way). A row that cannot be read (no text, a lone surrogate, an id that is
    neither a string nor an integer) is dropped with a warning in the worker's log, or, with
    ``with_problems``, kept with empty entities and the reason in a ``problem`` column, so the
    driver can report and count it."""

    def __init__(
        self,
        model: str,
        labels: list[str],
        threads: int,
        backend: str,
        options: dict,
        done: Sequence = (),
        with_problems: bool = False,
    ) -> None:
        from uner.loading import load

        self.labels = labels
        self.done = pa.array([str(doc_id) for doc_id in done], type=pa.string())
        self.with_problems = with_problems
        self.extractor = load(model, backend=backend, n_threads=threads, **options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if len(self.done):
            as_text = pc.cast(batch.column("id"), pa.string())
            batch = batch.filter(pc.invert(pc.fill_null(pc.is_in(as_text, value_set=self.done), False)))
        ids, texts, problems = [], [], []
        for line, (doc_id, text) in enumerate(zip(batch.column("id").to_pylist(), batch.column("text").to_pylist())):
            problem = make_document(line, doc_id, text).problem
            if problem is not None and not self.with_problems:
                logger.warning("skipping document %r: %s", doc_id, problem)
                continue
            ids.append(doc_id)
            texts.append(text if problem is None else None)
            problems.append(problem)
        readable = [text for text in texts if text is not None]
        extractions = iter(self.extractor.run_many(readable, self.labels))
        entities = [[] if text is None else [e.to_dict() for e in next(extractions).entities] for text in texts]
        columns = {"id": pa.array(ids, type=batch.schema.field("id").type), "entities": pa.array(entities, ENTITIES)}
        if self.with_problems:
            columns[PROBLEM] = pa.array(problems, pa.string())
        return pa.table(columns)


def extract_dataset(
    ds: ray.data.Dataset,
    model: str,
    labels: Sequence[str],
    workers: int = 1,
    threads_per_worker: int = 1,
    batch_size: int = 16,
    backend: str = "auto",
    *,
    done: Sequence = (),
    with_problems: bool = False,
    check_headroom: bool = True,
    **options,
) -> ray.data.Dataset:
    """``ds``'s ``{id, text}`` rows as ``{id, entities: [{label, text, start, end}]}`` rows.

    Args:
        workers: actors, each holding one copy of the model.
        threads_per_worker: threads each actor runs (and CPUs it reserves).
        batch_size: rows per call: texts an actor's engine decodes together.
        done: ids to leave out (documents already extracted).
        with_problems: keep the rows that cannot be read, with a ``problem`` column saying why
            (see :class:`DocumentReader`).
        check_headroom: warn when the workers would reserve every CPU of the cluster: a step of
            ``ds`` or after it that reserves one (Ray Data's reads and writes do by default) would
            then wait forever. Read with ``num_cpus=0``, or leave a CPU free.
        **options: :func:`uner.load`'s decoding and backend options (``max_new_tokens``...).
    """
    labels = check_labels(labels)
    if workers < 1 or threads_per_worker < 1 or batch_size < 1:
        raise InputError(
            f"expected workers, threads_per_worker and batch_size >= 1, got {workers}, {threads_per_worker}, "
            f"{batch_size}"
        )
    if check_headroom:
        _warn_without_headroom(workers * threads_per_worker)
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
            "done": list(done),
            "with_problems": with_problems,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads_per_worker,
        # no max_restarts / max_task_retries: Ray Data's defaults for an actor pool are already -1
        # (a killed worker comes back and its batches run again; tests/test_distributed.py kills one)
    )


def _warn_without_headroom(reserved: int) -> None:
    cpus = ray.cluster_resources().get("CPU", 0) if ray.is_initialized() else 0
    if cpus and reserved >= cpus:
        logger.warning(
            "the workers reserve %d of the cluster's %g CPUs: a read or write that reserves one (Ray Data's "
            "do by default) waits for ever; read with num_cpus=0 (ray.data.read_json(path, num_cpus=0)) or "
            "use fewer workers or threads",
            reserved,
            cpus,
        )


@dataclass
class DistributedRun:
    """What :func:`extract_files` did: documents ``written`` now, ``skipped`` as already there,
    ``rejected`` as unreadable or as a document whose id another one of the run already took
    (the one the workers finished first; each reported in a warning)."""

    written: int = 0
    skipped: int = 0
    rejected: int = 0


def extract_files(
    inputs: Sequence[str],
    output: Path,
    model: str,
    labels: Sequence[str],
    workers: int = 1,
    threads_per_worker: int = 1,
    output_format: str = "parquet",
    *,
    batch_size: int = 16,
    part_rows: int = 1000,
    part_seconds: float = 60.0,
    progress: bool = False,
    **options,
) -> DistributedRun:
    """``uner extract --ray``: documents of ``inputs`` (JSONL or Parquet files or globs) to part
    files under ``output`` (:mod:`uner.distributed_sink`), committed every ``part_rows``
    documents or ``part_seconds``; a rerun skips the ids already there (same labels and model only).

    >>> extract_files(["corpus/*.jsonl"], Path("out"), "org/name:q4_k_m", ["person"], workers=2)  # doctest: +SKIP
    DistributedRun(written=1200, skipped=0, rejected=0)
    """
    labels = check_labels(labels)
    files = input_files(inputs)
    kind = input_kind(files)  # once: a folder URI is listed through the network
    output = Path(output)
    writer = PartWriter(output, output_format, part_rows, part_seconds)  # checks the format before any work
    check_folder(output, labels, str(model))
    done = done_ids(output)
    run = DistributedRun(skipped=len(done))
    # no headroom needed: the reads reserve no CPU, and the driver writes
    extracted = extract_dataset(
        read_documents(files, kind), model, labels, workers, threads_per_worker, batch_size,
        done=done, with_problems=True, check_headroom=False, **options,
    )  # fmt: skip
    bar = _progress_bar(files, run.skipped) if progress else None
    seen: set[str] = set()
    try:
        with logs_beside(bar), writer:
            for batch in extracted.iter_batches(batch_size=None, batch_format="pyarrow"):
                readable = _report_problems(batch, seen, run)
                writer.add(readable)
                if bar is not None:
                    bar.update(batch.num_rows)
    except ray.exceptions.RayError as exc:
        raise DistributedError(ray_error_message(exc)) from exc
    finally:
        run.written = writer.written
        if bar is not None:
            bar.close()
    logger.debug("wrote %d documents to %s in %d part files", writer.written, output, writer.parts)
    return run


def _report_problems(batch: pa.Table, seen: set[str], run: DistributedRun) -> pa.Table:
    """``batch``'s readable rows, each id once; the others counted and warned about."""
    keep = []
    for doc_id, problem in zip(batch.column("id").to_pylist(), batch.column(PROBLEM).to_pylist()):
        if problem is None and str(doc_id) in seen:
            problem = "its id was already used by another document of this run"
        keep.append(problem is None)
        if problem is None:
            seen.add(str(doc_id))
        else:
            logger.warning("skipping document %r: %s", doc_id, problem)
            run.rejected += 1
    return batch.filter(pa.array(keep, pa.bool_())).drop_columns([PROBLEM])


def _progress_bar(files: Sequence[str], skipped: int):
    from tqdm import tqdm

    total = count_documents(files)
    return tqdm(total=total, initial=min(skipped, total or skipped), unit="doc", desc="extract", dynamic_ncols=True)
