"""Constrained decoding: the answer can only be a JSON list of strings, optionally of strings
that occur in the input text (``grounded``).

One implementation for every backend: all of them hand the engine raw logits, and greedy
decoding under a constraint is "the highest-scoring token the constraint allows". So instead of
masking the whole vocabulary, :class:`JsonListPicker` walks the tokens from the best down and
takes the first one whose bytes keep the answer valid: usually the first, since the model was
trained to answer in this format. The state machine runs over bytes, so byte-fallback and
byte-level BPE tokens that split a UTF-8 character are handled as they come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uner.engine import Greedy, Job
from uner.errors import InputError
from uner.token_table import TokenTable

CONSTRAINTS = ("json", "grounded")
# no newline: the official parser's regex stops at one, so a list spread over lines reads as []
_WHITESPACE = frozenset(b" \t\r")
_SIMPLE_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def check_constraint(name: str | None) -> str | None:
    if name not in (None, *CONSTRAINTS):
        raise InputError(f"expected constrain among none, {', '.join(CONSTRAINTS)}, got {name!r}")
    return name


@dataclass(frozen=True)
class _State:
    mode: str = "start"  # start, open, string, escape, unicode, after, comma, done
    content: bytes = b""  # the current string, unescaped (checked against the text when grounded)
    hex_left: int = 0


class JsonListPicker:
    """Greedy choice restricted to answers of the form ``["...", "..."]`` then EOS.

    Args:
        table: token bytes of the model.
        eos_id: the only token allowed once the list is closed.
        text: when given, every string must be a non-empty span of it (exact bytes).
    """

    def __init__(self, table: TokenTable, eos_id: int, text: str | None = None) -> None:
        self._table = table
        self._eos_id = eos_id
        self._text = text.encode("utf-8") if text is not None else None
        self._state = _State()

    def pick(self, logits: np.ndarray) -> int:
        if self._state.mode == "done":
            return self._eos_id
        for token in _best_first(logits):
            if token == self._eos_id:
                continue
            state = self._feed(self._state, self._table[int(token)])
            if state is not None:
                self._state = state
                return int(token)
        return self._eos_id  # unreachable: '"' and ']' always keep a list valid

    def _feed(self, state: _State, data: bytes) -> _State | None:
        """The state after ``data``, or ``None`` when ``data`` breaks the format."""
        if not data:
            return None  # special tokens (EOS included) never appear inside an answer
        mode, content, hex_left = state.mode, state.content, state.hex_left
        for byte in data:
            added = None
            if mode in ("start", "open", "after", "comma") and byte in _WHITESPACE:
                continue
            if mode == "start":
                mode = "open" if byte == ord("[") else ""
            elif mode == "open":
                mode, content = {ord('"'): ("string", b""), ord("]"): ("done", b"")}.get(byte, ("", b""))
            elif mode == "after":
                mode = {ord(","): "comma", ord("]"): "done"}.get(byte, "")
            elif mode == "comma":
                mode, content = ("string", b"") if byte == ord('"') else ("", b"")
            elif mode == "string":
                if byte == ord('"'):
                    mode = "after" if content or self._text is None else ""
                elif byte == ord("\\"):
                    mode = "escape"
                elif byte < 0x20:
                    mode = ""
                else:
                    added = bytes([byte])
            elif mode == "escape":
                if byte == ord("u") and self._text is None:
                    mode, hex_left = "unicode", 4
                elif byte in _SIMPLE_ESCAPES:
                    mode, added = "string", _SIMPLE_ESCAPES[byte]
                else:
                    mode = ""  # \\u escapes cannot be checked against the text byte by byte
            elif mode == "unicode":
                hex_left -= 1
                mode = ("string" if hex_left == 0 else "unicode") if byte in _HEX else ""
            else:
                mode = ""  # after "]" only EOS may follow
            if not mode:
                return None
            if added is not None:
                content += added
                if self._text is not None and content not in self._text:
                    return None
        return _State(mode, content, hex_left)


def _best_first(logits: np.ndarray):
    """Token ids from the highest logit down, sorting only as far as needed."""
    best = int(np.argmax(logits))
    yield best
    size, tried = len(logits), {best}
    count = min(size, 64)
    while True:
        top = np.argpartition(-logits, count - 1)[:count]
        for token in top[np.argsort(-logits[top], kind="stable")]:
            if int(token) not in tried:
                tried.add(int(token))
                yield int(token)
        if count == size:
            return
        count = min(size, count * 16)


def make_picker_factory(
    kind: str | None, table_of: Callable[[], TokenTable], eos_id: int
) -> Callable[[Job, int], object]:
    """A picker per branch for :func:`uner.engine.decode_jobs`: greedy, or held to the
    format (and, when grounded, to the branch's own text), as the job's decoding says, else
    as ``kind`` (the run's constraint)."""

    def make(job: Job, slot: int) -> object:
        constrain = job.constraint(kind)
        if constrain is None:
            return Greedy()
        return JsonListPicker(table_of(), eos_id, job.text if constrain == "grounded" else None)

    return make
