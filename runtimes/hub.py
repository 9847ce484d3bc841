"""Published variants on the Hugging Face Hub: ``repo_id:variant`` references and ``uner pull``.

A repo made by ``uner-export push`` holds a variant index (``manifest.json``: every variant's
files with size and sha256). Pulling a variant downloads the index and that variant's files
only, into huggingface_hub's cache (so ``HF_HUB_OFFLINE=1`` serves them afterwards), and checks
every file against the index. A file once checked is remembered by path, size and mtime, so
loading a multi-GB model again does not hash it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from uner.cache import CheckedFiles
from uner.errors import InputError, IntegrityError, ModelNotFound, describe_error
from uner.manifest import MANIFEST, check_member_names, variant_entry

_VARIANT_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+):(?P<variant>[\w.-]+)$")


def parse_variant_ref(ref: str) -> tuple[str, str] | None:
    """``"org/name:q4_k_m"`` -> ``("org/name", "q4_k_m")``; anything else -> None."""
    match = _VARIANT_REF.match(str(ref))
    return (match["repo"], match["variant"]) if match else None


#: names of the exceptions (httpx's, or requests' in older huggingface_hub) that mean nothing
#: answered at the endpoint: refused, unresolved name, connect timeout; matched by name so no
#: HTTP library is imported here
_UNREACHABLE = {"ConnectError", "ConnectTimeout", "ConnectionError"}


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub's HTTP logger silenced: it logs every retry ("... thrown while
    requesting", "Retrying in 1s"), twenty lines before the one error we report."""
    http_logger = logging.getLogger("huggingface_hub.utils._http")
    level = http_logger.level
    http_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        http_logger.setLevel(level)


def _unreachable(repo_id: str, filename: str, revision: str | None) -> str | None:
    """Why the Hub endpoint cannot be reached at all, or None (it answered, whatever it said,
    or offline mode is on). One HEAD without retries: hf_hub_download retries a refused
    connection with backoff for about 25 s before failing."""
    try:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    except ImportError:
        return None  # _download says what to install
    if constants.HF_HUB_OFFLINE:
        return None
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as exc:  # HTTP answers (404, 401...) are left to hf_hub_download to report
        if _UNREACHABLE & {cls.__name__ for cls in type(exc).__mro__}:
            return describe_error(exc)
    return None


def _download(repo_id: str, filename: str, revision: str | None, force: bool, local_only: bool = False) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as exc:
        raise ModelNotFound(f"expected huggingface_hub to fetch {repo_id}: pip install huggingface_hub") from exc
    try:
        with _quiet_hub():
            return Path(
                hf_hub_download(repo_id, filename, revision=revision, force_download=force, local_files_only=local_only)
            )
    except LocalEntryNotFoundError:
        raise ModelNotFound(
            f"expected {filename} of {repo_id} in the local Hub cache (offline or unreachable Hub): run `uner pull` "
            "with network first"
        ) from None
    except EntryNotFoundError:
        hint = " (not a uner-export push repo?)" if filename == MANIFEST else ""
        raise ModelNotFound(f"expected {filename} in {repo_id}{hint}") from None
    except RepositoryNotFoundError:
        raise ModelNotFound(
            f"expected a Hub repo {repo_id} you can read, got none (name, private repo without token?)"
        ) from None
    except Exception as exc:  # network and HTTP errors: the boundary, reported in one line
        raise ModelNotFound(f"expected to download {filename} of {repo_id}, got {describe_error(exc)}") from None


def pull(repo_id: str, variant: str | None, *, revision: str | None = None, force: bool = False) -> Path:
    """Download (or find in the cache) one variant of ``repo_id`` and check it; the local path
    a backend loads: a GGUF file or an ONNX folder.

    >>> pull("me/UniNER-7B-type-uner", "q4_k_m")  # doctest: +SKIP
    PosixPath('~/.cache/huggingface/hub/models--me--UniNER-7B-type-uner/snapshots/…/gguf/UniNER-7B-type.Q4_K_M.gguf')
    """
    unreachable = _unreachable(repo_id, MANIFEST, revision)
    index_path, index = _repo_index(repo_id, revision, force, unreachable)
    if variant is None:
        raise ModelNotFound(
            f"expected a variant of {repo_id} among {', '.join(index.get('variants', {})) or 'none'} (--variant)"
        )
    try:
        entry = variant_entry(index, variant, repo_id)
    except InputError as exc:
        raise ModelNotFound(str(exc)) from None
    try:
        check_member_names([entry.get("path"), *entry.get("files", [])], f"{MANIFEST} of {repo_id}")
    except InputError as exc:
        raise IntegrityError(str(exc)) from None
    if missing := [name for name in entry["files"] if name not in index.get("files", {})]:
        raise IntegrityError(
            f"expected every file of {variant} listed in {MANIFEST} of {repo_id}, got {', '.join(missing)} unlisted"
        )
    checked = CheckedFiles()
    for name in entry["files"]:
        local = _fetch(repo_id, name, revision, force, unreachable)
        if mismatch := checked.check(local, index["files"][name], name):
            raise IntegrityError(
                f"expected {mismatch.path} to match the repo's manifest, got {mismatch.reason}: "
                "the download is corrupt or was changed; run `uner pull --force` to fetch it again"
            )
    checked.save()
    return index_path.parent / entry["path"]


def _fetch(repo_id: str, filename: str, revision: str | None, force: bool, unreachable: str | None) -> Path:
    """:func:`_download`, or, when the endpoint cannot be reached (``unreachable`` says why),
    the copy in the local cache, else one error naming the endpoint and the reason."""
    if unreachable is None:
        return _download(repo_id, filename, revision, force)
    from huggingface_hub import constants

    problem = ModelNotFound(
        f"expected to reach the Hub at {constants.ENDPOINT} for {filename} of {repo_id}, got {unreachable}: "
        "check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use variants already pulled"
    )
    if force:  # asked to download again: the cached copy is not what was asked for
        raise problem
    try:
        return _download(repo_id, filename, revision, False, local_only=True)
    except ModelNotFound:
        raise problem from None


def _repo_index(repo_id: str, revision: str | None, force: bool, unreachable: str | None = None) -> tuple[Path, dict]:
    """The repo's manifest.json: where it was downloaded, and its content."""
    path = _fetch(repo_id, MANIFEST, revision, force, unreachable)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"expected {MANIFEST} of {repo_id} to be JSON, got: {exc}") from None
    if not isinstance(index, dict):
        raise ModelNotFound(f"expected {MANIFEST} of {repo_id} to hold a JSON object")
    try:
        check_member_names(index.get("files") or {}, f"{MANIFEST} of {repo_id}")
    except InputError as exc:
        raise IntegrityError(str(exc)) from None
    return path, index


def published_variants(repo_id: str) -> list[str] | None:
    """The variants of ``repo_id`` when it is a ``uner-export push`` repo (its manifest.json
    has a variant index), else None; None too when that cannot be told (offline, no access)."""
    try:
        _, index = _repo_index(repo_id, None, False, _unreachable(repo_id, MANIFEST, None))
    except ModelNotFound:
        return None
    variants = index.get("variants")
    return list(variants) if isinstance(variants, dict) else None
