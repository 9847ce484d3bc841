"""An output folder of a distributed run that a rerun can trust: every file in it is complete,
every document is in it exactly once, and a rerun skips the documents already there.

The driver alone writes it. Workers send their rows back to the driver (Ray Data's streaming
iterator yields each row of a dataset once, whichever workers died and were retried meanwhile),
which buffers them and commits a part file every ``part_rows`` documents or ``part_seconds``
seconds, whichever comes first: written under a temporary name, then renamed. A file in the folder
is therefore always a finished one and its ids are done, and a run stopped at any point (Ctrl-C, a
killed driver, a lost cluster) keeps every part it committed: a rerun skips their ids, removes the
stopped run's temporary file and loses at most the documents of the part being filled. The folder
lives on the driver's file system, so with ``ray://`` the results come back to the machine that
asked, and no node needs a shared file system to write them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from uner.atomic import atomic_path, write_text_atomic
from uner.errors import InputError

logger = logging.getLogger(__name__)
FORMATS = ("parquet", "jsonl")
META = "_uner_run.json"  # the labels and model the folder was started with


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
    """Refuse a folder started with other labels or another model; remove a stopped run's
    temporary part."""
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
    for stale in folder.glob(".part-*.partial"):  # uner.atomic's name of a part being written
        stale.unlink(missing_ok=True)
    write_text_atomic(meta, json.dumps({"labels": list(labels), "model": model}, indent=2) + "\n")


class PartWriter:
    """Buffers ``{id, entities}`` rows and commits them to ``folder`` as part files (see the
    module's docstring). Use it as a context manager: leaving it commits what is buffered, even
    when the run stops on an error or Ctrl-C, since every buffered row is a finished document."""

    def __init__(
        self,
        folder: Path,
        file_format: str = "parquet",
        part_rows: int = 1000,
        part_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if file_format not in FORMATS:
            raise InputError(f"expected an output format among {', '.join(FORMATS)}, got {file_format!r}")
        if part_rows < 1:
            raise InputError(f"expected part_rows >= 1, got {part_rows}")
        self.folder = Path(folder)
        self.file_format = file_format
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self.clock = clock
        self.run = uuid.uuid4().hex[:12]
        self.written = 0  # documents committed by this writer
        self.parts = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._since = clock()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:  # a stopped run keeps its finished documents too
            self.commit()
        except Exception as error:
            if exc is None:
                raise
            # the error that stopped the run is the one to report
            logger.warning("could not commit the last %d documents: %s", self._buffered, error)

    def add(self, table: pa.Table) -> None:
        """Buffer ``table``'s rows; commit a part once it is big or old enough."""
        if table.num_rows:
            self._buffer.append(table)
            self._buffered += table.num_rows
        if self._buffered >= self.part_rows or (self._buffered and self.clock() - self._since >= self.part_seconds):
            self.commit()

    def commit(self) -> None:
        """Write the buffered rows as one part file: a temporary name, then a rename."""
        self._since = self.clock()
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer, promote_options="default")
        name = f"part-{self.run}-{self.parts:05d}.{self.file_format}"
        with atomic_path(self.folder / name) as temporary:
            if self.file_format == "parquet":
                pq.write_table(table, temporary)
            else:
                with temporary.open("w", encoding="utf-8") as sink:
                    sink.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist())
        self.written += table.num_rows
        self.parts += 1
        self._buffer, self._buffered = [], 0
        logger.debug("committed %s (%d documents)", name, table.num_rows)
