"""What a distributed run reads: ``{id, text}`` documents from JSON-lines or Parquet files, local
paths and globs checked here, or URIs (``s3://``, ``gs://``, ``file://``) that Ray's nodes read."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from uner.errors import InputError


def input_files(patterns: Sequence[str]) -> list[str]:
    """Every file the patterns (paths or globs) name, in order, each once. A URI (``s3://…``,
    ``gs://…``, ``file://…``) goes to Ray as it is, a file or a folder: the nodes read it.
    :func:`input_kind` tells what they hold."""
    files: list[str] = []
    for pattern in map(str, patterns):
        if _is_uri(pattern):
            files.append(pattern)
            continue
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found or not all(Path(f).is_file() for f in found):
            raise InputError(f"expected input files, got {pattern}, which names none")
        files += found
    return list(dict.fromkeys(files))


def input_kind(files: Sequence[str]) -> str:
    """``.jsonl`` or ``.parquet``: what ``files`` hold (a folder URI: the files it holds)."""
    kinds = {kind for name in files for kind in _kinds(name)}
    if ".json" in kinds:
        kinds = kinds - {".json"} | {".jsonl"}
    if len(kinds) != 1 or not kinds <= {".jsonl", ".parquet"}:
        raise InputError(f"expected .jsonl or .parquet files (one kind), got {', '.join(sorted(kinds)) or 'none'}")
    return kinds.pop()


def _is_uri(name: str) -> bool:
    return "://" in name


def _kinds(name: str) -> set[str]:
    suffix = Path(name.split("://", 1)[-1]).suffix
    if suffix or not _is_uri(name):
        return {suffix}
    from pyarrow import fs  # a folder URI: list it, as Ray will

    try:
        filesystem, path = fs.FileSystem.from_uri(name)
        listed = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"expected a readable input, got {name}: {exc}") from exc
    names = [Path(info.path).name for info in listed if info.type == fs.FileType.File]
    return {Path(n).suffix for n in names if not n.startswith((".", "_"))}


def count_documents(files: Sequence[str]) -> int | None:
    """Documents in local ``files`` (lines of JSONL, rows of Parquet from its footer), for the
    progress bar; ``None`` when a file is remote."""
    if any(_is_uri(f) for f in files):
        return None
    total = 0
    for name in files:
        if Path(name).suffix == ".parquet":
            total += pq.ParquetFile(name).metadata.num_rows
            continue
        with open(name, "rb") as data:
            total += sum(1 for line in data if line.strip())
    return total


#: reading and filtering files reserve no CPU: the workers reserve what they compute with, and a
#: read task waiting for a CPU they hold would wait forever (2 workers x 1 thread on 2 CPUs did)
_IO = {"num_cpus": 0}


def read_documents(files: Sequence[str], kind: str) -> ray.data.Dataset:
    """``files`` (of :func:`input_kind` ``kind``) as a dataset of their rows."""
    if kind == ".parquet":
        return ray.data.read_parquet(list(files), **_IO)
    return ray.data.read_json(list(files), lines=True, **_IO)
