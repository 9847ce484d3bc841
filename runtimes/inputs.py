"""Reading the texts and labels the ``uner`` CLI is given."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from runtimes.errors import InputError


def _read_utf8(path: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"expected an input file, got {path}, which does not exist") from exc
    except IsADirectoryError as exc:
        raise InputError(f"expected an input file, got the folder {path}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"expected UTF-8 text in {path}, got an invalid byte at offset {exc.start}: re-encode it as UTF-8"
        ) from exc


def read_texts(path: Path) -> list[str]:
    """Texts of an input file: JSON lines with a ``text`` field (``.jsonl``), else one per line."""
    content = _read_utf8(path)
    lines = [(number, line) for number, line in enumerate(content.splitlines(), start=1) if line.strip()]
    return [_document(line, number, path)[1] for number, line in lines]


def split_labels(spec: str | None) -> list[str]:
    """``"person, location"`` -> ``["person", "location"]``; empty is an input error."""
    labels = [label.strip() for label in (spec or "").split(",") if label.strip()]
    if not labels:
        raise InputError("expected at least one entity label (--labels person,location), got none")
    return list(dict.fromkeys(labels))


def read_labels_file(path: Path) -> list[str]:
    """Entity types of a labels file: one per line; blank lines and ``#`` comments ignored."""
    lines = _read_utf8(path).splitlines()
    labels = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not labels:
        raise InputError(f"expected one entity label per line in {path}, got none")
    return list(dict.fromkeys(labels))


def iter_documents(path: Path) -> Iterator[tuple[str, str]]:
    """``(id, text)`` of each document, streamed: JSON lines with ``text`` (and ``id``, else
    the line number) for ``.jsonl``, else one text per line with its line number as id."""
    if not path.is_file():
        raise InputError(f"expected an input file, got {path}, which does not exist")
    seen: set[str] = set()
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            try:
                line = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise InputError(f"expected UTF-8 text on line {number} of {path}: re-encode it as UTF-8") from exc
            if not line:
                continue
            doc_id, text = _document(line, number, path)
            if doc_id in seen:
                raise InputError(f"expected unique ids in {path}, got {doc_id!r} again on line {number}")
            seen.add(doc_id)
            yield doc_id, text


def _document(line: str, number: int, path: Path) -> tuple[str, str]:
    if path.suffix != ".jsonl":
        return str(number), line
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"expected JSON on line {number} of {path}, got: {exc.msg}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise InputError(f"expected an object with a 'text' string on line {number} of {path}")
    return str(record.get("id", number)), record["text"]
