"""Grounding: map answer strings back to character offsets in the input text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from uner.entity import Entity


@dataclass
class Grounded:
    """Entities found for one (text, label) query and the answers that were not in the text."""

    entities: list[Entity] = field(default_factory=list)
    ungrounded: list[str] = field(default_factory=list)


def _occurrences(text: str, mention: str, flags: int, whole_words: bool) -> list[tuple[int, int]]:
    pattern = re.escape(mention)
    if whole_words:
        # a boundary only where the mention itself starts/ends with a word character, so "C++"
        # or "(language)" still match before/after anything
        if re.match(r"\w", mention):
            pattern = r"(?<!\w)" + pattern
        if re.search(r"\w$", mention):
            pattern += r"(?!\w)"
    return [(m.start(), m.end()) for m in re.finditer(pattern, text, flags)]


def _spans(text: str, needle: str) -> list[tuple[int, int]]:
    """Whole-word occurrences first ("AI" is not the middle of "MAIN"), case-sensitive before
    case-insensitive; substrings only when the text has no whole-word occurrence at all."""
    for whole_words in (True, False):
        for flags in (0, re.IGNORECASE):
            if spans := _occurrences(text, needle, flags, whole_words):
                return spans
    return []


def ground(text: str, label: str, mentions: list[str]) -> Grounded:
    """Every occurrence of every mention: whole words before substrings, and within each
    case-sensitive first, case-insensitive as fallback.

    Mentions are matched without surrounding whitespace; those that are empty or not found are
    dropped and reported in ``ungrounded``.

    >>> [e.start for e in ground("Paris and paris", "location", ["Paris"]).entities]
    [0]
    >>> [e.start for e in ground("PARIS, Paris", "location", ["paris"]).entities]
    [0, 7]
    >>> [e.start for e in ground("MAIN uses AI", "field", ["AI"]).entities]
    [10]
    """
    result = Grounded()
    for mention in mentions:
        needle = mention.strip()  # an entity never starts or ends with the space a model may emit
        spans = _spans(text, needle) if needle else []
        if not spans:
            result.ungrounded.append(mention)
        for start, end in spans:
            result.entities.append(Entity(label=label, text=text[start:end], start=start, end=end))
    return result
