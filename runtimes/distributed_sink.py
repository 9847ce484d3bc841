"""An output folder of a distributed run that a rerun can trust: every file in it is complete,
every document is in it exactly once, and a rerun skips the documents already there.

Write tasks write their part files into a staging folder (each file to a temporary name, then
renamed). Only when the whole write has succeeded does the driver move the files of the task
attempts Ray counted as successful into the output folder, one atomic rename each: the output of
an attempt that died (a killed worker, which Ray retries) stays in staging and is removed by the
next run. A file in the folder is therefore always a finished one, and its ids are done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasink

from uner.atomic import write_text_atomic
from uner.errors import InputError

logger = logging.getLogger(__name__)
FORMATS = ("parquet", "jsonl")
META = "_uner_run.json"  # the labels and model the folder was started with
_STAGING = ".staging-"


def part_files(folder: Path) -> list[Path]:
    """The finished part files of ``folder`` (any format)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("part-") and _format_of(p))


def _format_of(path: Path) -> str | None:
    return {".parquet": "parquet", ".jsonl": "jsonl"}.get(path.suffix)


def done_ids(folder: Path) -> list:
    """The ids already written to ``folder``: the documents a rerun skips."""
    ids: list = []
    for path in part_files(folder):
        if _format_of(path) == "parquet":
            ids += pq.read_table(path, columns=["id"]).column("id").to_pylist()
        else:
            with path.open(encoding="utf-8") as lines:
                ids += [json.loads(line)["id"] for line in lines if line.strip()]
    return ids


def check_folder(folder: Path, labels: Sequence[str], model: str) -> None:
    """Refuse a folder started with other labels or another model; clear a crashed run's staging."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"expected --output to be a folder with --ray, got the file {folder}")
    meta = folder / META
    if meta.is_file() and part_files(folder):
        recorded = json.loads(meta.read_text(encoding="utf-8"))
        if set(recorded["labels"]) != set(labels) or recorded["model"] != model:
            raise InputError(
                f"expected the labels and model {folder} was started with ({', '.join(recorded['labels'])}; "
                f"{recorded['model']}), got {', '.join(labels)}; {model}: write to a new --output"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{_STAGING}*"):
        shutil.rmtree(stale, ignore_errors=True)
    write_text_atomic(meta, json.dumps({"labels": list(labels), "model": model}, indent=2) + "\n")


class FolderSink(Datasink):
    """Writes a dataset of ``{id, entities}`` rows into ``folder`` as Parquet or JSON-lines part
    files, committed only once the whole write succeeded (see the module's docstring)."""

    def __init__(self, folder: Path, file_format: str = "parquet") -> None:
        if file_format not in FORMATS:
            raise InputError(f"expected an output format among {', '.join(FORMATS)}, got {file_format!r}")
        self.folder = Path(folder).resolve()
        self.file_format = file_format
        self.run = uuid.uuid4().hex[:12]
        self.staging = self.folder / f"{_STAGING}{self.run}"
        self.written = 0  # documents committed to the folder by this write

    def on_write_start(self, schema=None) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)

    def write(self, blocks: Iterable[pa.Table], ctx) -> list[str]:
        tables = [pa.table(block) if not isinstance(block, pa.Table) else block for block in blocks]
        tables = [table for table in tables if table.num_rows]
        if not tables:
            return []
        table = pa.concat_tables(tables, promote_options="default")
        name = f"part-{self.run}-{ctx.task_idx:05d}-{uuid.uuid4().hex[:8]}.{self.file_format}"
        temporary = self.staging / f".{name}.tmp"
        if self.file_format == "parquet":
            pq.write_table(table, temporary)
        else:
            with temporary.open("w", encoding="utf-8") as sink:
                for row in table.to_pylist():
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(temporary, self.staging / name)
        return [name]

    def on_write_complete(self, write_result) -> None:
        names = [name for returned in write_result.write_returns for name in returned or []]
        for name in names:
            os.replace(self.staging / name, self.folder / name)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.written = write_result.num_rows
        logger.info("wrote %d files (%d documents) to %s", len(names), write_result.num_rows, self.folder)

    def on_write_failed(self, error: Exception) -> None:
        logger.error("Error: the write failed (%s); nothing of this run was added to %s", error, self.folder)
