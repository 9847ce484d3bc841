"""Published variants on the Hugging Face Hub: ``repo_id:variant`` references and ``uner pull``.

A repo made by ``uner-export push`` holds a variant index (``manifest.json``: every variant's
files with size and sha256). Pulling a variant downloads the index and that variant's files
only, into huggingface_hub's cache (so ``HF_HUB_OFFLINE=1`` serves them afterwards), and checks
every file against the index. A file once checked is remembered by path, size and mtime, so
loading a multi-GB model again does not hash it again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from runtimes.errors import InputError, IntegrityError, ModelNotFound
from runtimes.cache import CheckedFiles
from runtimes.manifest import MANIFEST, variant_entry

_VARIANT_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+):(?P<variant>[\w.-]+)$")


def parse_variant_ref(ref: str) -> tuple[str, str] | None:
    """``"org/name:q4_k_m"`` -> ``("org/name", "q4_k_m")``; anything else -> None."""
    match = _VARIANT_REF.match(str(ref))
    return (match["repo"], match["variant"]) if match else None


def _download(repo_id: str, filename: str, revision: str | None, force: bool) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as exc:
        raise ModelNotFound(f"expected huggingface_hub to fetch {repo_id}: pip install huggingface_hub") from exc
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, force_download=force))
    except LocalEntryNotFoundError:
        raise ModelNotFound(f"expected {filename} of {repo_id} in the local Hub cache (offline or unreachable Hub): run `uner pull` with network first") from None
    except EntryNotFoundError:
        hint = " (not a uner-export push repo?)" if filename == MANIFEST else ""
        raise ModelNotFound(f"expected {filename} in {repo_id}{hint}") from None
    except RepositoryNotFoundError:
        raise ModelNotFound(f"expected a Hub repo {repo_id} you can read, got none (name, private repo without token?)") from None
    except Exception as exc:  # network and HTTP errors: the boundary, reported in one line
        raise ModelNotFound(f"expected to download {filename} of {repo_id}, got {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def pull(repo_id: str, variant: str | None, *, revision: str | None = None, force: bool = False) -> Path:
    """Download (or find in the cache) one variant of ``repo_id`` and check it; the local path
    a backend loads: a GGUF file or an ONNX folder.

    >>> pull("me/UniNER-7B-type-uner", "q4_k_m")  # doctest: +SKIP
    PosixPath('~/.cache/huggingface/hub/models--me--UniNER-7B-type-uner/snapshots/…/gguf/UniNER-7B-type.Q4_K_M.gguf')
    """
    index_path, index = _repo_index(repo_id, revision, force)
    if variant is None:
        raise ModelNotFound(f"expected a variant of {repo_id} among {', '.join(index.get('variants', {})) or 'none'} (--variant)")
    try:
        entry = variant_entry(index, variant, repo_id)
    except InputError as exc:
        raise ModelNotFound(str(exc)) from None
    checked = CheckedFiles()
    for name in entry["files"]:
        local = _download(repo_id, name, revision, force)
        if mismatch := checked.check(local, index["files"][name], name):
            raise IntegrityError(f"expected {mismatch.path} to match the repo's manifest, got {mismatch.reason}: "
                                 "the download is corrupt or was changed; run `uner pull --force` to fetch it again")
    checked.save()
    return index_path.parent / entry["path"]


def _repo_index(repo_id: str, revision: str | None, force: bool) -> tuple[Path, dict]:
    """The repo's manifest.json: where it was downloaded, and its content."""
    path = _download(repo_id, MANIFEST, revision, force)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"expected {MANIFEST} of {repo_id} to be JSON, got: {exc}") from None
    if not isinstance(index, dict):
        raise ModelNotFound(f"expected {MANIFEST} of {repo_id} to hold a JSON object")
    return path, index


def published_variants(repo_id: str) -> list[str] | None:
    """The variants of ``repo_id`` when it is a ``uner-export push`` repo (its manifest.json
    has a variant index), else None; None too when that cannot be told (offline, no access)."""
    try:
        _, index = _repo_index(repo_id, None, False)
    except ModelNotFound:
        return None
    variants = index.get("variants")
    return list(variants) if isinstance(variants, dict) else None

