"""Small outputs written whole or not at all: a temporary name beside the target, renamed onto
it when complete (the bench's files, the corpus record). The exporters' multi-GB files use
:func:`uner.toolkit.files.atomic_path`, which also clears leftovers of killed runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary name beside ``final`` (hidden, ``.partial``), renamed onto it when the block
    finishes and removed when it does not: an interrupted bench leaves no file that looks
    finished. An OS error names ``final``, not the temporary name."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")  # opened normally: the umask applies
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(final)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` holding ``text`` (UTF-8), or left as it was if writing fails or is interrupted."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
