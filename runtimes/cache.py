"""uner-toolkit's own cache folder, and the memory of files already checked against a sha256.

Hashing a multi-GB model takes seconds to minutes; a file whose real path, size and mtime are
unchanged since it matched a sha256 is taken to match it still (as make trusts mtimes). Explicit
checks (``uner-export verify``, the check before a push) always hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from uner.manifest import Mismatch, check_file

_STAMPS = "verified.json"


def cache_dir() -> Path:
    """``$UNER_CACHE`` or ``~/.cache/uner``: reference models, verification stamps."""
    return Path(os.environ.get("UNER_CACHE", Path.home() / ".cache" / "uner"))


class CheckedFiles:
    """Files known to match a sha256; load once, :meth:`check` many, :meth:`save` once."""

    def __init__(self) -> None:
        try:
            self._stamps = json.loads((cache_dir() / _STAMPS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._stamps = {}
        self._changed = False

    def check(self, path: Path, expected: dict, name: str | None = None) -> Mismatch | None:
        """Like :func:`uner.manifest.check_file`, without hashing a file stamped unchanged."""
        real = os.path.realpath(path)
        try:
            stat = os.stat(real)
        except OSError:
            return check_file(Path(path), expected, name)
        stamp = [stat.st_size, stat.st_mtime_ns, expected.get("sha256")]
        if self._stamps.get(real) == stamp:
            return None
        mismatch = check_file(Path(real), expected, name or Path(path).name)
        if mismatch is None:
            self._stamps[real] = stamp
            self._changed = True
        return mismatch

    def save(self) -> None:
        if not self._changed:
            return
        path = cache_dir() / _STAMPS
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.partial")
            tmp.write_text(json.dumps(self._stamps), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a read-only cache only costs a re-hash next time
            pass
        self._changed = False
