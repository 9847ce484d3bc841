"""``uner-export push``: upload a recipe's checked variants to a Hub repo in one commit.

The plan (files, sizes, the model card, the repo's own variant index) is made from the local
``manifest.json`` without any network, so ``--dry-run`` shows exactly what a push would send.
The token is whatever huggingface_hub finds (``HF_TOKEN``, ``hf auth login``); it is never
printed or logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from uner.errors import describe_error, first_line
from uner.manifest import MANIFEST, read_manifest, verify_folder
from uner.toolkit.errors import PublishError
from uner.toolkit.model_card import render_card

CARD = "README.md"


@dataclass(frozen=True)
class PlannedFile:
    path_in_repo: str
    size: int
    local: Path | None = None  # a file of the export...
    content: bytes | None = None  # ...or generated here (card, index)


@dataclass
class PushPlan:
    repo_id: str
    folder: Path
    files: list[PlannedFile]
    variants: list[str]
    left_out: dict[str, str] = field(default_factory=dict)  # variant -> why
    card: str = ""
    index: dict = field(default_factory=dict)  # the repo's manifest.json after the push

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def plan_push(
    folder: str | Path,
    repo_id: str,
    *,
    include_failed: bool = False,
    only: list[str] | None = None,
    progress: bool = False,
) -> PushPlan:
    """What a push of ``folder`` (a ``uner-export recipe`` output) to ``repo_id`` would upload.

    Variants that did not pass their parity gate are left out unless ``include_failed``;
    ``only`` restricts the push to the named variants. Every file is checked against the
    manifest first, so a corrupted export is never published.
    """
    _check_repo_id(repo_id)
    folder = Path(folder)
    index = read_manifest(folder)
    if not isinstance(index.get("variants"), dict):
        raise PublishError(
            f"expected a recipe output (manifest.json with 'variants') in {folder}; run uner-export recipe first"
        )
    chosen, left_out = _choose(index, include_failed, only)
    if not chosen:
        reasons = "; ".join(f"{n}: {why}" for n, why in left_out.items())
        raise PublishError(
            f"expected at least one publishable variant in {folder}, got none ({reasons}); see --include-failed"
        )
    names = [f for v in chosen for f in index["variants"][v]["files"]]
    if mismatches := verify_folder(folder, names, progress=progress):
        raise PublishError(
            f"expected the files of {folder} to match its manifest, got: {'; '.join(map(str, mismatches))}"
        )
    repo_index = _repo_index(index, chosen)
    card = render_card(repo_index, repo_id)
    files = [PlannedFile(n, index["files"][n]["size"], local=folder / n) for n in names]
    files += [_generated(MANIFEST, json.dumps(repo_index, indent=2) + "\n"), _generated(CARD, card)]
    return PushPlan(repo_id, folder, files, chosen, left_out, card, repo_index)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(
            f"expected a Hub repo id like me/UniNER-7B-type-uner, got {repo_id!r}: {first_line(exc)}"
        ) from None


def _choose(index: dict, include_failed: bool, only: list[str] | None) -> tuple[list[str], dict[str, str]]:
    variants = index["variants"]
    if only and (unknown := [n for n in only if n not in variants]):
        raise PublishError(f"expected variants among {', '.join(variants)}, got {', '.join(unknown)}")
    chosen, left_out = [], {}
    for name, entry in variants.items():
        status = entry.get("status", "unchecked")
        if only and name not in only:
            continue
        if status == "passed" or include_failed:
            chosen.append(name)
        elif status == "failed" and not entry.get("reason"):  # an index written before interval gates
            drop = -entry["bench"]["delta_f1"]
            left_out[name] = f"F1 drop {drop:.2f} > {entry['max_f1_drop']} allowed"
        else:
            left_out[name] = entry.get("reason") or "not benched"
    return chosen, left_out


def _repo_index(index: dict, chosen: list[str]) -> dict:
    """The index as the repo will hold it: only the pushed variants and their files."""
    variants = {name: index["variants"][name] for name in chosen}
    files = {f: index["files"][f] for entry in variants.values() for f in entry["files"]}
    return {**index, "variants": variants, "files": files}


def _generated(name: str, text: str) -> PlannedFile:
    data = text.encode("utf-8")
    return PlannedFile(name, len(data), content=data)


def describe(plan: PushPlan, private: bool = False) -> str:
    """The planned commit, for ``--dry-run``: files with sizes, what was left out, the card."""
    lines = [
        f"repo: {plan.repo_id} ({'private' if private else 'public'}), one commit, {len(plan.files)} files, "
        f"{plan.total_bytes / 1e6:.1f} MB",
        f"variants: {', '.join(plan.variants)}",
    ]
    lines += [f"left out: {name} ({why})" for name, why in plan.left_out.items()]
    lines += [f"  {f.size:>14,d}  {f.path_in_repo}" for f in plan.files]
    lines += ["", f"--- {CARD} ---", plan.card]
    return "\n".join(lines)


def _keeping_published_variants(api, plan: PushPlan, existing: set[str]) -> PushPlan:
    """A plan whose index and card also list the variants already in the repo that this push
    does not replace, so pushing one variant does not hide the others."""
    published = json.loads(Path(api.hf_hub_download(plan.repo_id, MANIFEST)).read_text(encoding="utf-8"))
    kept = {
        name: entry
        for name, entry in published.get("variants", {}).items()
        if name not in plan.index["variants"]
        and all(f in existing and f in published.get("files", {}) for f in entry["files"])
    }
    if not kept:
        return plan
    files = {f: published["files"][f] for entry in kept.values() for f in entry["files"]}
    index = {**plan.index, "variants": {**kept, **plan.index["variants"]}, "files": {**files, **plan.index["files"]}}
    card = render_card(index, plan.repo_id)
    generated = {MANIFEST: _generated(MANIFEST, json.dumps(index, indent=2) + "\n"), CARD: _generated(CARD, card)}
    planned = [generated.get(f.path_in_repo, f) for f in plan.files]
    return PushPlan(plan.repo_id, plan.folder, planned, plan.variants, plan.left_out, card, index)


def push(plan: PushPlan, *, private: bool = False, force: bool = False, api=None) -> str:
    """Create ``plan.repo_id`` if needed and upload every planned file in one commit; refuses
    to overwrite files already in the repo unless ``force``. Returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi()
    try:
        api.create_repo(plan.repo_id, private=private, exist_ok=True)
        existing = set(api.list_repo_files(plan.repo_id))
        if clash := sorted(existing & {f.path_in_repo for f in plan.files}):
            if not force:
                raise PublishError(
                    f"expected new files in {plan.repo_id}, got existing {', '.join(clash)}: pass --force to overwrite"
                )
        if MANIFEST in existing:
            plan = _keeping_published_variants(api, plan, existing)
        operations = [
            CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local) if f.local else f.content)
            for f in plan.files
        ]
        info = api.create_commit(
            plan.repo_id, operations=operations, commit_message=f"Add {', '.join(plan.variants)} (uner-toolkit)"
        )
    except PublishError:
        raise
    except Exception as exc:  # HTTP, auth, network, offline mode: the Hub's boundary, reported in one line
        message = f"expected the Hub to accept the push to {plan.repo_id}, got {describe_error(exc)}"
        raise PublishError(message) from None
    return info.commit_url
