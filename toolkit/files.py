"""Atomic output files, sha256, and the export manifest.

Every output is written under a temporary ``.<name>.XXXXXXXX.partial`` name (tempfile's
8-character random part) beside its final name and renamed when complete. A killed run leaves
that name behind; the next successful export of the same output removes it
(:func:`remove_stale_partials`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from uner.errors import InputError
from uner.manifest import MANIFEST, file_entry, sha256_file
from uner.toolkit.errors import OutputExists

__all__ = [
    "MANIFEST",
    "PARTIAL_SUFFIX",
    "atomic_path",
    "check_apart",
    "check_writable",
    "exchange_paths",
    "file_entry",
    "install_folder",
    "partial_prefix",
    "read_own_manifest",
    "remove_stale_partials",
    "sha256_file",
    "umask",
    "update_manifest",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"
#: the random part tempfile puts between prefix and suffix (``tempfile._RandomNameSequence``)
_TEMPFILE_RANDOM = "[a-z0-9_]{8}"


def _read_umask() -> int:
    """The process umask, read without changing it where the OS tells (Linux /proc); elsewhere
    by the set-and-restore idiom, once, at import time, before any thread of ours runs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def umask() -> int:
    """The umask outputs are created with (mkstemp makes 0600 files, mkdtemp 0700 folders)."""
    return _UMASK


def check_writable(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite finished outputs unless ``force``; checked before any work starts."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise OutputExists(f"expected new output files, got existing {names}: pass --force to overwrite")


def check_apart(out: Path, source: Path, what: str = "source") -> None:
    """Refuse an output folder that is, contains or is inside the ``source`` folder: replacing
    an output there could delete the very files it is made from."""
    o, s = Path(out).resolve(), Path(source).resolve()
    relation = "is" if o == s else "is inside" if s in o.parents else "contains" if o in s.parents else None
    if relation:
        raise InputError(
            f"expected an output folder apart from the {what} folder {source}, got {out}, which {relation} it"
        )


def read_own_manifest(folder: Path, kind: str) -> dict | None:
    """``folder/manifest.json`` when it is an export manifest of format ``kind``; None when
    there is none. Another export's manifest, or an unreadable one, is refused: rewriting it
    would lose what it records, so the exporters check this before any work."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"expected a readable {MANIFEST} in {folder} or none, got: {exc}") from exc
    got = manifest.get("format") if isinstance(manifest, dict) else None
    if got != kind or not isinstance(manifest.get("files"), dict):
        what = f"a {got!r} manifest" if got else "a manifest.json that is not one of ours"
        article = "an" if kind[0] in "aeiou" else "a"
        raise InputError(
            f"expected no {MANIFEST} in {folder} or {article} {kind} export's, got {what}: choose another --out"
        )
    return manifest


def partial_prefix(name: str) -> str:
    """The prefix of the temporary names an output called ``name`` is written under."""
    return f".{name}."


def _newest_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def remove_stale_partials(folder: Path, prefix: str, older_than: float) -> list[Path]:
    """Remove what killed runs left in ``folder``: files and folders named ``<prefix>XXXXXXXX.partial``
    (the names tempfile made for one output) that nothing has changed since ``older_than``.

    Which leftovers are safe to remove: only those of the caller's own output name, because two
    exports writing the same output at once are not supported (they would replace each other's
    result anyway); and of those only ones untouched since the caller's export began, because a
    run still writing keeps changing its file. Returns what was removed.
    """
    pattern = re.compile(re.escape(prefix) + _TEMPFILE_RANDOM + re.escape(PARTIAL_SUFFIX))
    try:
        candidates = [Path(folder) / name for name in os.listdir(folder) if pattern.fullmatch(name)]
    except OSError:
        return []
    removed = []
    for path in candidates:
        try:
            if _newest_change(path) >= older_than:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            logger.warning("could not remove %s, left by an interrupted export: %s", path, exc)
            continue
        logger.info("removed %s, left by an interrupted export", path)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``, renamed onto it only if the block finishes.

    An interrupted run leaves a ``.partial`` name behind (or nothing), never a file that
    looks finished; the next run that completes ``final`` removes such leftovers.
    """
    started = time.time()
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=partial_prefix(final.name), suffix=PARTIAL_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    remove_stale_partials(final.parent, partial_prefix(final.name), started)


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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # renameat2(2): swap two existing paths in one step


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap the existing paths ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the OS, the C library or the filesystem cannot, with nothing changed."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc before 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _holds_cwd(folder: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    return cwd == folder.resolve() or folder.resolve() in cwd.parents


def install_folder(built: Path, final: Path, owned: Iterable[str]) -> None:
    """Put the complete folder ``built`` (a sibling of ``final``) at ``final``.

    ``final`` may already hold a previous export and other files. Only ``owned`` names (the
    previous manifest's files) and the names ``built`` holds are replaced; anything else in
    ``final`` stays. An interruption leaves the old complete output or the new one:

    * no ``final``, or an empty one: a single rename;
    * ``final`` holding nothing but owned names: a single atomic exchange of the two folders
      (Linux), after which the old export, now at ``built``, is deleted;
    * otherwise (other files live there, the folder is the current directory, or no exchange
      is available) ``final`` itself stays: each file is renamed over its old version and the
      manifest goes last, so until it is replaced the old manifest no longer matches the
      files and loading or ``uner-export verify`` refuses the folder instead of using half an
      export; a rerun finishes the job.
    """
    owned = {*owned, *os.listdir(built)}
    if not final.exists():
        os.replace(built, final)
        return
    present = set(os.listdir(final))
    if not present:
        try:
            os.replace(built, final)  # POSIX renames a folder onto an empty one
            return
        except OSError:
            final.rmdir()
            os.replace(built, final)
            return
    if present <= owned and not _holds_cwd(final) and exchange_paths(built, final):
        for name in set(os.listdir(built)) - owned:  # created in final since we listed it: keep it
            os.replace(built / name, final / name)
        shutil.rmtree(built, ignore_errors=True)
        return
    new = sorted(os.listdir(built))
    for name in new:
        if name != MANIFEST:
            if (final / name).is_dir() and not (final / name).is_symlink():
                shutil.rmtree(final / name)
            os.replace(built / name, final / name)
    for name in sorted(owned - set(new) - {MANIFEST}):
        if (final / name).exists() or (final / name).is_symlink():
            _remove(final / name)  # a file of the previous export this one no longer has
    if MANIFEST in new:
        os.replace(built / MANIFEST, final / MANIFEST)
    built.rmdir()
