"""Long texts: overlapping windows on sentence boundaries, and merging what they found.

UniNER was trained on passages whose prompt and answer fit in 1024 tokens; a longer text is
read as several windows that each fit, overlapping so that an entity cut by one window's edge
is whole in the next. Windows are cut between sentences, inside a sentence only between words
when the sentence alone is too long, and inside a word only as a last resort.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from uner.entity import Entity

#: prompt + answer budget UniNER was trained with
DEFAULT_WINDOW = 1024
_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+[\"')\]]*|\n+|$)\s*")
_WORD = re.compile(r"\S+\s*|\s+")


def _pieces(text: str, start: int, end: int, pattern: re.Pattern) -> list[tuple[int, int]]:
    return [(start + m.start(), start + m.end()) for m in pattern.finditer(text[start:end]) if m.end() > m.start()]


def _units(text: str, count: Callable[[str], int], budget: int) -> list[tuple[int, int, int]]:
    """Spans (start, end, tokens) that each fit ``budget``: sentences, else words, else characters."""
    units = []
    for start, end in _pieces(text, 0, len(text), _SENTENCE):
        tokens = count(text[start:end])
        if tokens <= budget:
            units.append((start, end, tokens))
            continue
        for word_start, word_end in _pieces(text, start, end, _WORD):
            tokens = count(text[word_start:word_end])
            if tokens <= budget:
                units.append((word_start, word_end, tokens))
            else:  # a "word" longer than the window (e.g. a base64 blob): cut it evenly
                step = max(1, (word_end - word_start) * budget // (tokens + 1))
                units += [(i, min(i + step, word_end), budget) for i in range(word_start, word_end, step)]
    return units


def split_windows(text: str, count: Callable[[str], int], budget: int, overlap: int) -> list[tuple[int, str]]:
    """``(offset, piece)`` windows of ``text`` whose token count (by ``count``) is at most
    ``budget``; consecutive windows share up to ``overlap`` tokens of whole units.

    >>> split_windows("One. Two. Three.", lambda s: len(s.split()), 2, 1)
    [(0, 'One. Two. '), (5, 'Two. Three.')]
    """
    if count(text) <= budget:
        return [(0, text)]
    units = _units(text, count, budget)
    windows, first = [], 0
    while first < len(units):
        last, used = first, units[first][2]
        while last + 1 < len(units) and used + units[last + 1][2] <= budget:
            last += 1
            used += units[last][2]
        windows.append((units[first][0], text[units[first][0] : units[last][1]]))
        if last == len(units) - 1:
            break
        nxt, shared = last + 1, 0
        while nxt - 1 > first and shared + units[nxt - 1][2] <= overlap:
            nxt -= 1
            shared += units[nxt][2]
        first = nxt
    return windows


def merge_entities(found: Iterable[Entity]) -> list[Entity]:
    """Entities sorted by offset, each (span, label) once (windows overlap)."""
    return sorted(set(found))


def shift(entity: Entity, offset: int) -> Entity:
    return Entity(label=entity.label, text=entity.text, start=entity.start + offset, end=entity.end + offset)
