"""Reading the texts and labels the ``uner`` CLI is given."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from uner.checks import check_text, encode_utf8
from uner.errors import InputError


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
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        document = _document(line, number, path, with_id=False)  # ids are not used here
        if document.problem is not None:
            raise InputError(f"{document.problem} (line {number} of {path})")
        texts.append(document.text)
    if not texts:  # not "got neither": the file was given, it holds nothing to read
        raise InputError(f"expected at least one text in {path}, got none (the file is empty or blank)")
    return texts


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


@dataclass(frozen=True)
class Document:
    """One line of a corpus file: its ``id`` and ``text``, or why it cannot be read.

    ``problem`` is None for a readable document; otherwise ``text`` (and ``id``, when it is the
    part that is wrong) is None and ``problem`` says what was expected ("expected ..., got ...").
    """

    line: int
    id: str | None
    text: str | None
    problem: str | None = None

    def describe(self) -> str:
        """``line 3 (id 'a')``: where the document is, for warnings."""
        return f"line {self.line}" + (f" (id {self.id!r})" if self.id is not None else "")


def make_document(line: int, doc_id: object, text: object) -> Document:
    """A :class:`Document` from an id and a text as read: ids are strings (integers become
    their decimal string), texts are strings every backend can encode (no lone surrogates,
    which JSON's ``"\\ud800"`` escapes produce). A problem is recorded, not raised, so one bad
    document does not stop a corpus."""
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str):
        return Document(line, None, None, f"expected the 'id' as a string or an integer, got {_json_type(doc_id)}")
    try:
        encode_utf8(doc_id)
    except InputError as exc:
        return Document(line, None, None, f"{exc} in its 'id'")
    if text is None or not isinstance(text, str):
        return Document(line, doc_id, None, f"expected a 'text' string, got {_json_type(text)}")
    try:
        check_text(text)
    except InputError as exc:
        return Document(line, doc_id, None, str(exc))
    return Document(line, doc_id, text)


def _json_type(value: object) -> str:
    """How a JSON reader would name ``value``'s type (``null``, not ``NoneType``)."""
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


def iter_documents(path: Path) -> Iterator[Document]:
    """Every non-blank line of a corpus file as a :class:`Document`, streamed: JSON lines with
    ``text`` (and ``id``, else the line number) for ``.jsonl``, else one text per line with its
    line number as id. A line that cannot be read is yielded with its ``problem`` (the caller
    skips and reports it); ids used twice are an error, as results could not be told apart."""
    if path.is_dir():
        raise InputError(f"expected an input file, got the folder {path}")
    if not path.is_file():
        raise InputError(f"expected an input file, got {path}, which does not exist")
    seen: set[str] = set()
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            try:
                line = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield Document(
                    number, None, None, f"expected UTF-8 text, got an invalid byte at offset {exc.start} of the line"
                )
                continue
            if not line:
                continue
            document = _document(line, number, path)
            if document.id is not None:
                if document.id in seen:
                    raise InputError(f"expected unique ids in {path}, got {document.id!r} again on line {number}")
                seen.add(document.id)
            yield document


def _document(line: str, number: int, path: Path, with_id: bool = True) -> Document:
    if path.suffix != ".jsonl":
        return make_document(number, str(number), line)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return Document(number, None, None, f"expected JSON, got: {exc.msg}")
    if not isinstance(record, dict):
        return Document(number, None, None, f"expected a JSON object with a 'text' string, got {_json_type(record)}")
    return make_document(number, record.get("id", number) if with_id else number, record.get("text"))
