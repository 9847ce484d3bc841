"""Parsing of the model's answer, as UniNER's official evaluator (src/eval/evaluate.py) does.

The evaluator anchors the list at the start of the answer (``re.match``), takes the shortest
``[...]``, ``json.loads`` it and treats any failure as an empty answer. Backends strip the
decoded answer first, as UniNER's serving code does, so a leading space does not hide the list.
"""

from __future__ import annotations

import json
import re
import string

_FIRST_LIST = re.compile(r"\[(.*?)\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def _json_list(raw: str) -> list | None:
    match = _FIRST_LIST.match(raw)
    if match is None:
        return []
    try:
        items = json.loads(match.group(0))
    except (json.JSONDecodeError, RecursionError):
        return None
    return items if isinstance(items, list) else None


def parse_answer(raw: str) -> list[str]:
    """Mentions in a raw answer, de-duplicated in order; ``[]`` when it does not parse.

    Never raises. An answer holding anything but strings counts as unparseable, as the
    official evaluator's ``normalize_answer`` fails on it and scores the answer as empty.

    >>> parse_answer('["Paris", "Paris", "Rome"] trailing')
    ['Paris', 'Rome']
    >>> parse_answer("The person in the text is Barack Obama.")
    []
    """
    items = _json_list(raw)
    if not items or not all(isinstance(item, str) for item in items):
        return []
    return list(dict.fromkeys(items))


def normalize_answer(answer: str) -> str:
    """Lower-case, strip punctuation, drop a/an/the, collapse whitespace (official metric).

    >>> normalize_answer("The  U.S. Army")
    'us army'
    """
    no_punct = "".join(ch for ch in answer.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", no_punct).split())


def parse_normalized(raw: str) -> list[str]:
    """The official evaluator's ``parser``: normalized mentions, de-duplicated after normalizing."""
    return list(dict.fromkeys(normalize_answer(item) for item in parse_answer(raw)))


def close_cut_list(raw: str) -> str:
    """An answer cut short inside its list (by the loop guard or the token limit), closed after
    its last complete string: ``'["a", "b", "a'`` -> ``'["a", "b"]'``. Anything else is
    returned as it is.

    The official parser reads a cut list as ``[]``; this reading keeps the mentions the model
    did finish, so it changes F1 and is only used when asked for (``close_loops``).

    >>> close_cut_list('["Paris", "Rome", "Par')
    '["Paris", "Rome"]'
    """
    stripped = raw.strip()
    if not stripped.startswith("[") or "]" in stripped or "\n" in stripped:
        return raw
    decoder, end, position = json.JSONDecoder(), 1, 1
    while True:
        position = _skip_spaces(stripped, position)
        if position >= len(stripped) or stripped[position] != '"':
            break
        try:
            item, after = decoder.raw_decode(stripped, position)
        except json.JSONDecodeError:
            break
        if not isinstance(item, str):
            break
        end = after
        position = _skip_spaces(stripped, after)
        if position >= len(stripped) or stripped[position] != ",":
            break
        position += 1
    return stripped[:end] + "]"


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r":
        position += 1
    return position
