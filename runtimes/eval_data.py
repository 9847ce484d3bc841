"""Evaluation data as UniNER queries: the official eval JSON files, and CoNLL/BIO files.

A query is one (text, entity type) question with its gold answer as the JSON list the official
files carry. BIO files become every sentence x every entity type of the file (types with no
mention in a sentence are asked too, answered ``[]``), as the official CrossNER files were built:
CrossNER AI's test.txt gives CrossNER_AI.json's gold string for 5,586 of its 5,590 distinct
(text, type) pairs (the rest belong to a sentence test.txt holds twice, annotated differently).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from uner.errors import InputError

#: dataset tag -> natural-language type, as in UniNER's eval files; None = not asked (misc).
LABEL_NAMES: dict[str, str | None] = {
    "misc": None,
    "MISC": None,
    "PER": "person",
    "ORG": "organization",
    "LOC": "location",
    "organisation": "organization",
    "programlang": "program language",
    "musicalartist": "musical artist",
    "musicalinstrument": "musical instrument",
    "musicgenre": "music genre",
    "literarygenre": "literary genre",
}
_TAG = re.compile(r"^(O|[BIES]-.+)$")
_QUESTION = re.compile(r"^What describes (.+) in the text\?$")


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    label: str
    gold: str  # the gold answer as a JSON list string

    @property
    def gold_mentions(self) -> list[str]:
        return json.loads(self.gold)


@dataclass
class Passage:
    """A sentence and its mentions per (natural-language) entity type."""

    text: str
    mentions: dict[str, list[str]] = field(default_factory=dict)


def label_name(tag_type: str) -> str | None:
    if tag_type in LABEL_NAMES:
        return LABEL_NAMES[tag_type]
    return tag_type.replace("_", " ").lower()


def read_uniner_json(path: Path) -> list[Query]:
    """Queries of an official UniNER eval file (``{"id", "conversations"}`` records)."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise ValueError(f"a JSON {type(records).__name__}, not a list of records")
        queries = []
        for record in records:
            turns = [turn["value"] for turn in record["conversations"]]
            if not all(isinstance(turn, str) for turn in turns[:4]):
                raise ValueError(f"record {record.get('id')} has a turn that is not a string")
            question = _QUESTION.match(turns[2])
            if not turns[0].startswith("Text: ") or question is None:
                raise ValueError(f"record {record.get('id')} is not a UniNER query")
            queries.append(Query(str(record["id"]), turns[0][len("Text: ") :], question.group(1), turns[3]))
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise InputError(f"expected a UniNER eval JSON file, got {path}: {exc}") from exc
    if not queries:
        raise InputError(f"expected at least one query in the UniNER eval file {path}, got an empty list")
    return queries


def _token_and_tag(fields: list[str]) -> tuple[str, str]:
    """CoNLL-2003 and CrossNER put the tag last; MIT movie puts it first."""
    if _TAG.match(fields[-1]):
        return fields[0], fields[-1]
    if _TAG.match(fields[0]):
        return fields[-1], fields[0]
    raise ValueError(f"no BIO tag in line {' '.join(fields)!r}")


def _passage(tokens: list[tuple[str, str]]) -> Passage:
    passage = Passage(" ".join(token for token, _ in tokens))
    current: list[str] = []
    current_type: str | None = None

    def close() -> None:
        name = label_name(current_type) if current_type else None
        if current and name:  # repeats are kept, as in the official files
            passage.mentions.setdefault(name, []).append(" ".join(current))

    for token, tag in tokens:
        kind, _, tag_type = tag.partition("-")
        if kind in ("B", "S") or kind == "O" or tag_type != current_type:
            close()
            current, current_type = ([token], tag_type) if kind != "O" else ([], None)
        else:
            current.append(token)
    close()
    return passage


def read_bio(path: Path) -> tuple[list[Passage], list[str]]:
    """Sentences of a CoNLL/BIO file and the entity types the file uses (natural-language names)."""
    passages, tokens, types = [], [], {}
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    passages.append(_passage(tokens))
                tokens = []
                continue
            token, tag = _token_and_tag(fields)
            if tag != "O" and (name := label_name(tag.partition("-")[2])):
                types[name] = None
            tokens.append((token, tag))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"expected a CoNLL/BIO file, got {path}: {exc}") from exc
    if tokens:
        passages.append(_passage(tokens))
    return passages, list(types)


def bio_queries(path: Path) -> list[Query]:
    """Every sentence x every entity type of a BIO file, with gold answers."""
    passages, types = read_bio(path)
    if not passages or not types:
        found = "no sentences" if not passages else "sentences but no tagged entity type"
        raise InputError(f"expected a CoNLL/BIO file with tagged entities, got {path} holding {found}")
    stem = Path(path).stem
    return [
        Query(f"{stem}_{i}_{label}", passage.text, label, json.dumps(passage.mentions.get(label, [])))
        for i, passage in enumerate(passages)
        for label in types
    ]


def read_queries(path: Path) -> list[Query]:
    """Queries from a UniNER eval JSON (``.json``) or a CoNLL/BIO file (anything else)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"expected an evaluation file, got {path}, which does not exist")
    return read_uniner_json(path) if path.suffix == ".json" else bio_queries(path)
