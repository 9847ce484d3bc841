"""``manifest.json``: what an export folder holds (size and sha256 of every file), and the check
that a folder, or one variant pulled from the Hub, still matches it.

Every export writes one: a GGUF ladder folder, an ONNX folder, and the root of a recipe's output
(the *variant index*: every variant's files, plus its bench scores). The check lives on the
inference side so that ``uner pull`` can verify what it downloaded without the exporters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from uner.errors import InputError

MANIFEST = "manifest.json"
_CHUNK = 8 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict:
    """A manifest entry: ``{"size", "sha256"}``."""
    return {"size": Path(path).stat().st_size, "sha256": sha256_file(path)}


def read_manifest(folder: Path) -> dict:
    """``folder/manifest.json``, with a clear error when it is missing or not a manifest."""
    path = Path(folder) / MANIFEST
    if Path(folder).is_file():  # else reported as a manifest that is not JSON ("Not a directory")
        raise InputError(f"expected an export folder holding {MANIFEST}, got the file {folder}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"expected {path}, found no manifest: is {folder} an export folder?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"expected {path} to be JSON, got: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InputError(f"expected a 'files' table in {path}")
    check_member_names(manifest["files"], path)
    return manifest


def check_member_names(names: Iterable[object], where: object) -> None:
    """Refuse file names that would leave their folder (``../x``, ``/etc/x``, ``C:\\x``): a
    manifest names files inside its own folder (or Hub repo), and checks, pushes and pulls
    follow those names."""
    for name in names:
        pure = PurePosixPath(name) if isinstance(name, str) else None
        if (
            pure is None
            or not name
            or pure.is_absolute()
            or ".." in pure.parts
            or "\\" in name
            or PureWindowsPath(name).drive
        ):
            raise InputError(f"expected file names inside the folder in {where}, got {name!r}")


@dataclass(frozen=True)
class Mismatch:
    """A file that does not match its manifest entry."""

    path: str
    reason: str  # "missing", "size ..." or "sha256 ..."

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def check_file(path: Path, expected: dict, name: str | None = None) -> Mismatch | None:
    """``None`` when ``path`` has the expected size and sha256 (size first: it is free)."""
    name = name or Path(path).name
    if not Path(path).is_file():
        return Mismatch(name, "missing")
    size = Path(path).stat().st_size
    if size != expected.get("size"):
        return Mismatch(name, f"size {size} bytes, manifest says {expected.get('size')}")
    digest = sha256_file(path)
    if digest != expected.get("sha256"):
        return Mismatch(name, f"sha256 {digest[:12]}…, manifest says {str(expected.get('sha256'))[:12]}…")
    return None


def verify_folder(folder: Path, names: Iterable[str] | None = None, progress: bool = False) -> list[Mismatch]:
    """Every file the manifest of ``folder`` lists (or only ``names``) checked against it."""
    files = read_manifest(folder)["files"]
    names = list(files) if names is None else list(names)
    if unknown := [n for n in names if n not in files]:
        raise InputError(f"expected files listed in {Path(folder) / MANIFEST}, got {', '.join(unknown)}")
    if progress:
        from tqdm import tqdm

        names = tqdm(names, desc="verify", unit="file", leave=False)
    return [m for n in names if (m := check_file(Path(folder) / n, files[n], n))]


def variant_entry(index: dict, name: str, where: str) -> dict:
    """One variant of a variant index (the ``manifest.json`` of a recipe output or Hub repo)."""
    variants = index.get("variants")
    if not isinstance(variants, dict):
        raise InputError(f"expected a variant index (manifest.json with 'variants') in {where}")
    if name not in variants:
        raise InputError(f"expected a variant of {where} among {', '.join(variants) or 'none'}, got {name!r}")
    return variants[name]
