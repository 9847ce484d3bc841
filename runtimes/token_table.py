"""The bytes each token adds to generated text, looked up once per token and kept.

Constrained decoding and the loop guard both read answers as bytes, one token at a time. The
table fills lazily: a run meets a few thousand distinct tokens, not the whole vocabulary, and
reading every piece of a 49k or 128k vocabulary through a tokenizer or ctypes would cost the
load time of every extractor that never needs most of them.
"""

from __future__ import annotations

from collections.abc import Callable


class TokenTable:
    """``table[token]``: the bytes ``token`` adds (empty for control tokens and ids past the vocabulary)."""

    def __init__(self, token_bytes: Callable[[int], bytes], vocab_size: int) -> None:
        self._token_bytes = token_bytes
        self._pieces: list[bytes | None] = [None] * vocab_size

    def __getitem__(self, token: int) -> bytes:
        if not 0 <= token < len(self._pieces):
            return b""
        piece = self._pieces[token]
        if piece is None:
            piece = self._pieces[token] = self._token_bytes(token)
        return piece

    def __len__(self) -> int:
        return len(self._pieces)
