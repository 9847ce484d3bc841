"""Ending an answer once the tokens it could still generate cannot change what it parses to.

UniNER's official parser (:mod:`uner.parsing`) reads only the first ``[...]`` of the stripped
answer, anchored at its start, and its regex's ``.`` stops at a newline. Two rules follow:

* **settled** (exact): once the answer's first non-space character is not ``[``, or once a ``]``
  or a newline has followed that ``[``, the parser ignores every later token. The answer ends
  there; its parsed result is, by construction, what the full answer parses to.
* **loop** (measured): a greedy answer whose last tokens repeat one block over and over (one
  mention again and again, or a phrase inside a string) has entered a cycle that, in practice,
  runs to the token limit without closing its list, which the parser reads as ``[]``. The cut
  answer has no ``]`` either, so it reads as ``[]`` too. This rule is a prediction, not a
  proof: its thresholds were chosen on training splits (``bench/loop_guard_calibration.py``)
  and its parity is measured on evaluation data by ``uner bench --unguarded``.

The guard sees token ids and their bytes only, so every backend, in the batched engine and on
the per-query path alike, cuts the same answer at the same token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uner.token_table import TokenTable

SETTLED, LOOP = "settled", "loop"
#: why an answer ended: EOS, the token limit, or one of the guard's two rules
STOP_REASONS = ("eos", "limit", SETTLED, LOOP)
_ASCII_SPACE = frozenset(byte for byte in range(128) if chr(byte).isspace())  # what str.strip() removes
_OPEN, _CLOSE, _NEWLINE = ord("["), ord("]"), ord("\n")


@dataclass(frozen=True)
class LoopGuardSettings:
    """When the last tokens count as a cycle: a block of at most ``max_period`` tokens,
    repeated back to back at least ``min_repeats`` times and over at least ``min_tokens``."""

    max_period: int = 48
    # on 2,774 training answers (uniner-smol Q4_K_M, bench/loop_guard_calibration.py) answers
    # that closed their list repeated a block at most 6 times; the 4 that ran to the limit
    # repeated theirs 52-81 times. 12 keeps twice the margin and still cuts a runaway at ~1/5.
    min_repeats: int = 12
    min_tokens: int = 32


DEFAULT_SETTINGS = LoopGuardSettings()


class AnswerGuard:
    """The guard of one answer, fed its tokens in order (EOS excluded)."""

    def __init__(self, table: TokenTable, settings: LoopGuardSettings = DEFAULT_SETTINGS) -> None:
        self._table = table
        self._settings = settings
        self._phase = "lead"  # lead (only spaces so far), list (after the opening "["), off, done
        self._tokens: list[int] = []
        # _streak[p]: how many of the latest tokens equal the token p places before them
        self._streak = [0] * (settings.max_period + 1)

    def feed(self, token: int) -> str | None:
        """``"settled"`` or ``"loop"`` when the answer should end with this token, else ``None``."""
        if self._phase in ("off", "done"):
            return None
        if self._read(self._table[token]):
            self._phase = "done"
            return SETTLED
        self._tokens.append(token)
        if self._phase == "list" and self._in_cycle():
            self._phase = "done"
            return LOOP
        return None

    def _read(self, data: bytes) -> bool:
        """Advance the phase over ``data``; True once the parse can no longer change."""
        for byte in data:
            if self._phase == "lead":
                if byte in _ASCII_SPACE:
                    continue
                if byte == _OPEN:
                    self._phase = "list"
                elif byte < 0x80:
                    return True  # not a list: the parser reads [] whatever follows
                else:
                    self._phase = "off"  # perhaps a Unicode space str.strip() removes: step aside
                    return False
            elif byte in (_CLOSE, _NEWLINE):
                return True
        return False

    def _in_cycle(self) -> bool:
        tokens, streak, settings = self._tokens, self._streak, self._settings
        latest, count = tokens[-1], len(tokens)
        for period in range(1, min(settings.max_period, count - 1) + 1):
            streak[period] = streak[period] + 1 if tokens[count - 1 - period] == latest else 0
            covered = streak[period] + period
            if covered >= settings.min_tokens and covered >= period * settings.min_repeats:
                return True
        return False


def stop_reason(
    ids: Sequence[int], max_new_tokens: int, table: TokenTable | None, settings: LoopGuardSettings = DEFAULT_SETTINGS
) -> str:
    """Why a finished answer of ``ids`` ended (``table`` ``None``: generated without the guard).

    The guard is a function of the tokens alone, so replaying it names the rule that cut an
    answer without the engine having to carry the reason along."""
    if table is not None and ids:
        guard = AnswerGuard(table, settings)
        for index, token in enumerate(ids):
            reason = guard.feed(token)
            if reason is not None:
                if index == len(ids) - 1:
                    return reason
                break  # it would have cut earlier: this answer ran without the guard
    return "limit" if len(ids) >= max_new_tokens else "eos"
