"""Grounding: map answer strings back to character offsets in the input text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runtimes.entity import Entity


@dataclass
class Grounded:
    """Entities found for one (text, label) query and the answers that were not in the text."""

    entities: list[Entity] = field(default_factory=list)
    ungrounded: list[str] = field(default_factory=list)


def _occurrences(text: str, mention: str, flags: int) -> list[tuple[int, int]]:
    pattern = re.compile(re.escape(mention), flags)
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def ground(text: str, label: str, mentions: list[str]) -> Grounded:
    """Every occurrence of every mention, case-sensitive first, case-insensitive as fallback.

    Mentions are matched without surrounding whitespace; those that are empty or not found are
    dropped and reported in ``ungrounded``.

    >>> [e.start for e in ground("Paris and paris", "location", ["Paris"]).entities]
    [0]
    >>> [e.start for e in ground("PARIS, Paris", "location", ["paris"]).entities]
    [0, 7]
    """
    result = Grounded()
    for mention in mentions:
        needle = mention.strip()  # an entity never starts or ends with the space a model may emit
        spans = [] if not needle else (
            _occurrences(text, needle, 0) or _occurrences(text, needle, re.IGNORECASE)
        )
        if not spans:
            result.ungrounded.append(mention)
        for start, end in spans:
            result.entities.append(Entity(label=label, text=text[start:end], start=start, end=end))
    return result
