"""Reading the texts and labels the ``uner`` CLI is given."""

from __future__ import annotations

import json
import sys
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
    lines = [line for line in content.splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    texts = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"expected JSON on line {number} of {path}, got: {exc.msg}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"expected an object with a 'text' string on line {number} of {path}")
        texts.append(record["text"])
    return texts


def split_labels(spec: str | None) -> list[str]:
    """``"person, location"`` -> ``["person", "location"]``; empty is an input error."""
    labels = [label.strip() for label in (spec or "").split(",") if label.strip()]
    if not labels:
        raise InputError("expected at least one entity label (--labels person,location), got none")
    return list(dict.fromkeys(labels))
