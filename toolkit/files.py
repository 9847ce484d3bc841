"""Atomic output files, sha256, and the export manifest."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtimes.manifest import MANIFEST, file_entry, sha256_file
from toolkit.errors import OutputExists

__all__ = ["MANIFEST", "atomic_path", "check_writable", "file_entry", "sha256_file", "umask", "update_manifest", "write_json_atomic"]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite finished outputs unless ``force``; checked before any work starts."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise OutputExists(f"expected new output files, got existing {names}: pass --force to overwrite")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``, renamed onto it only if the block finishes.

    An interrupted run leaves a ``.partial`` name behind (or nothing), never a file that
    looks finished.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: object) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def update_manifest(out_dir: Path, files: list[Path], extra: dict) -> Path:
    """Add ``files`` (size, sha256) to ``out_dir/manifest.json``, keeping entries of other files."""
    path = out_dir / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    manifest.update(extra)
    entries = manifest.setdefault("files", {})
    for file in files:
        entries[file.name] = file_entry(file)
    manifest["files"] = dict(sorted(entries.items()))
    write_json_atomic(path, manifest)
    return path
