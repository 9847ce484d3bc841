"""Checks of what callers pass in (labels, texts, thread counts), shared by every backend."""

from __future__ import annotations

import os
from collections.abc import Iterable

from uner.errors import InputError


def check_labels(labels: Iterable[str] | str) -> list[str]:
    """Labels stripped and de-duplicated in order; an empty list is an input error."""
    if isinstance(labels, str):
        labels = [labels]
    cleaned = list(dict.fromkeys(label.strip() for label in labels if label and label.strip()))
    if not cleaned:
        raise InputError("expected at least one entity label, got none")
    for label in cleaned:  # checked here, so the error names the label, not a place in the prompt
        try:
            encode_utf8(label)
        except InputError as exc:
            raise InputError(f"{exc} of the label {label!r}") from None
    return cleaned


def check_text(text: object) -> str:
    """``text`` itself when it is a str every backend can encode (UTF-8, so no lone surrogates)."""
    if not isinstance(text, str):
        raise InputError(f"expected the text as a str, got {type(text).__name__}")
    encode_utf8(text)
    return text


def encode_utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a non-UTF-8 byte decoded with surrogateescape, or
    ``"\\ud800"`` in JSON) is an input error naming its position, not a traceback."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"expected text encodable as UTF-8, got {text[exc.start]!r} (a lone surrogate) at character {exc.start}"
        ) from None


#: upper bound for ``n_threads``: llama.cpp's own limit (GGML_MAX_N_THREADS); far more threads
#: than cores only costs memory (an ONNX session with 100000 grew to 16 GB)
MAX_THREADS = 512


def check_threads(n_threads: int | None) -> int:
    """``n_threads`` checked against 1..:data:`MAX_THREADS`; ``None`` means every core."""
    if n_threads is None:
        return os.cpu_count() or 1
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= MAX_THREADS:
        raise InputError(f"expected n_threads between 1 and {MAX_THREADS}, got {n_threads!r}")
    return n_threads
