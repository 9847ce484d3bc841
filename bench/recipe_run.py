"""``run_recipe``: build every variant a recipe names, check each against the torch reference
on the recipe's bench data, and record it all in the output's variant index (``manifest.json``).

Resumable: a variant whose files still match the index (sha256; a file unchanged since it last
matched is not hashed again, see :mod:`uner.cache`) and whose build settings are unchanged is
kept, not rebuilt; a variant already benched with the same settings is not benched again. The
index is rewritten (atomically) after every variant, so an interrupted run loses one at most.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from uner import __version__
from uner.bench.recipe_build import build_variants
from uner.errors import describe_error
from uner.manifest import MANIFEST, read_manifest
from uner.prompt import TEMPLATE
from uner.tokenizer import eos_token_text
from uner.toolkit.constants import TOOL_NAME
from uner.toolkit.errors import RecipeError
from uner.toolkit.files import write_json_atomic
from uner.toolkit.gates import FAILED, INCONCLUSIVE, PASSED, UNCHECKED, limit_order, next_limit, verdict
from uner.toolkit.gates import reason as gate_reason
from uner.toolkit.recipes import Recipe, VariantPlan

logger = logging.getLogger(__name__)


@dataclass
class RecipeRun:
    out: Path
    index: dict

    def status(self, name: str) -> str:
        return self.index["variants"][name]["status"]


def resolve_source(recipe: Recipe) -> tuple[Path, str | None]:
    """The recipe's source as a local HF folder, and the Hub commit it came from (if any)."""
    path = Path(recipe.source).expanduser()
    if path.exists():
        return path, None
    from uner.bench.reference_models import REFERENCES, resolve_reference

    if recipe.source in REFERENCES:
        return Path(resolve_reference(recipe.source)), None
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise RecipeError(
            f"expected a local source folder, got {recipe.source} (huggingface_hub is not installed)"
        ) from exc
    try:
        folder = Path(snapshot_download(recipe.source, revision=recipe.revision))
    except Exception as exc:  # network, auth, unknown repo/revision: all mean "cannot get the source"
        raise RecipeError(
            f"expected to download {recipe.source}@{recipe.revision or 'main'} from the Hub, got {describe_error(exc)}"
        ) from None
    return folder, folder.name  # snapshots are named after their commit


class SourceFolder:
    """The recipe's source, resolved (downloaded) at most once, and only if something needs it."""

    def __init__(self, recipe: Recipe) -> None:
        self._recipe = recipe
        self._resolved: tuple[Path, str | None] | None = None

    def path(self) -> Path:
        return self._resolve()[0]

    def commit(self) -> str | None:
        return self._resolve()[1]

    def _resolve(self) -> tuple[Path, str | None]:
        if self._resolved is None:
            self._resolved = resolve_source(self._recipe)
        return self._resolved


def _bench_settings(recipe: Recipe) -> dict:
    # the recipe's relative names, not local paths: the index is published with the variants
    return {
        "data": list(recipe.bench.data),
        "limit": recipe.bench.limit,
        "max_limit": recipe.bench.max_limit,
        "max_new_tokens": recipe.bench.max_new_tokens,
        "reference": recipe.source,
        **_reference_options(recipe),
    }


def _reference_options(recipe: Recipe) -> dict:
    options = {"device": recipe.bench.reference_device, "dtype": recipe.bench.reference_dtype}
    if recipe.allow_pickle:  # the UniNER releases ship pytorch_model*.bin only: the recipe vouches for them
        options["allow_pickle"] = True
    return options


def _runnable_here(plan: VariantPlan) -> str | None:
    """Why the variant cannot be benched on this machine, or None."""
    if plan.format == "onnx" and plan.device != "cpu":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return f"needs the {plan.device} execution provider, which this onnxruntime lacks"
    return None


def gate_variants(
    recipe: Recipe, out: Path, index: dict, data_dir: Path | None, source: SourceFolder, *, threads: int | None
) -> None:
    """Bench the variants not yet benched with these settings and set each one's status by the
    interval rule (:mod:`uner.toolkit.gates`), benching inconclusive ones again on twice the
    queries up to ``bench.max_limit``."""
    if recipe.bench is None:
        return
    data = [Path(data_dir) / name for name in recipe.bench.data] if data_dir else []
    settings = _bench_settings(recipe)
    pending: dict[str, int | None] = {}  # variant -> queries per file of its next bench
    seen: dict[str, int] = {}  # variant -> queries of its last bench with these settings
    for plan in recipe.variants:
        entry = index["variants"][plan.name]
        entry["max_f1_drop"] = plan.max_f1_drop
        bench = entry.get("bench")
        if bench and bench.get("settings") == settings and bench.get("sha256") == _fingerprint(index, entry):
            _settle(entry, plan.max_f1_drop)
            grown = next_limit(bench.get("limit", recipe.bench.limit), recipe.bench.max_limit)
            if entry["status"] == INCONCLUSIVE and grown is not False:
                pending[plan.name], seen[plan.name] = grown, bench["queries"]
        elif reason := _runnable_here(plan):
            entry.update(status=UNCHECKED, reason=reason)
        else:
            pending[plan.name] = recipe.bench.limit
    while pending:
        limit = min(pending.values(), key=limit_order)
        plans = [plan for plan in recipe.variants if plan.name in pending and pending[plan.name] == limit]
        for plan, result in zip(plans, _run_bench(recipe, out, plans, data, threads, source.path(), limit)):
            entry = index["variants"][plan.name]
            entry["bench"] = {**result, "limit": limit, "settings": settings, "sha256": _fingerprint(index, entry)}
            _settle(entry, plan.max_f1_drop)
            del pending[plan.name]
            grown = next_limit(limit, recipe.bench.max_limit)
            # a bigger limit that took no more queries (the files hold no more) settles it
            if entry["status"] == INCONCLUSIVE and grown is not False and result["queries"] != seen.get(plan.name):
                pending[plan.name] = grown
            seen[plan.name] = result["queries"]
        write_json_atomic(out / MANIFEST, index)
    for plan in recipe.variants:
        entry = index["variants"][plan.name]
        if entry["status"] in (FAILED, INCONCLUSIVE):
            logger.warning(
                "%s: %s: kept in %s, not publishable (push --include-failed overrides)",
                plan.name,
                entry["reason"],
                out / entry["path"],
            )
        elif entry["status"] == UNCHECKED:
            logger.warning("%s: not checked (%s): not publishable", plan.name, entry.get("reason", "no bench"))
    write_json_atomic(out / MANIFEST, index)


def _settle(entry: dict, max_drop: float) -> None:
    entry["status"] = verdict(entry["bench"], max_drop)
    if entry["status"] == PASSED:
        entry.pop("reason", None)
    else:
        entry["reason"] = gate_reason(entry["bench"], max_drop, entry["status"])


def _fingerprint(index: dict, entry: dict) -> list[str]:
    return [index["files"][name]["sha256"] for name in entry["files"]]


def _run_bench(
    recipe: Recipe,
    out: Path,
    plans: list[VariantPlan],
    data: list[Path],
    threads: int | None,
    reference: Path,
    limit: int | None,
) -> list[dict]:
    from uner.bench.cli import run_bench

    candidates = [str(out / plan.path(recipe.name)) for plan in plans]
    results = run_bench(
        str(reference),
        candidates,
        data,
        out / "bench",
        limit=limit,
        baselines=False,
        threads=threads,
        max_new_tokens=recipe.bench.max_new_tokens,
        reference_options=_reference_options(recipe),
    )
    by_path = {entry["path"]: entry for entry in results["variants"]}
    reference_f1 = results["variants"][0]["f1"]
    picked = []
    for candidate in candidates:
        entry = by_path[candidate]
        picked.append(
            {
                "f1": entry["f1"],
                "f1_ci95": entry.get("f1_ci95"),
                "delta_f1": entry["delta_f1"],
                "delta_f1_ci95": entry.get("delta_f1_ci95"),
                "agreement": entry["agreement"],
                "changed_answers": entry.get("changed_answers"),
                "bits_per_weight": entry.get("bits_per_weight"),
                "reference_f1": reference_f1,
                "queries": results["queries"],
                "queries_per_s": entry["queries_per_s"],
            }
        )
    return picked


def _check_data(names: tuple[str, ...], data_dir: Path | None, what: str, without: str) -> None:
    """Refuse to start, before anything is built, when files the run needs are not in ``data_dir``."""
    if data_dir is None:
        raise RecipeError(f"expected --data-dir (or UNER_DATA) holding {', '.join(names)}{without}")
    if missing := [name for name in names if not (data_dir / name).is_file()]:
        raise RecipeError(f"expected {what} in {data_dir}, missing {', '.join(missing)}")


def check_bench_data(recipe: Recipe, data_dir: Path | None) -> None:
    """Refuse to start when the parity check could not run: before anything is built."""
    if recipe.bench is not None:
        _check_data(recipe.bench.data, data_dir, "bench data", " for the parity check, or --no-bench")


def check_calibration_data(recipe: Recipe, data_dir: Path | None) -> None:
    """Refuse to start when the importance matrix or GPTQ Hessians could not be measured: before anything is built."""
    if recipe.gguf_imatrix is not None:
        _check_data(recipe.gguf_imatrix.data, data_dir, "imatrix calibration data", "")
    if gptq := recipe.onnx_quantization.get("gptq_data"):
        _check_data(gptq, data_dir, "GPTQ calibration data", "")


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    bench: bool = True,
    force: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> RecipeRun:
    """Build, check and index every variant of ``recipe`` in ``out``.

    ``data_dir`` holds the recipe's bench files (default ``$UNER_DATA``); ``bench=False`` skips
    the parity check (every variant stays ``unchecked``, so not publishable).

    >>> run_recipe(load_recipe("UniNER-7B-type"), "out").status("q4_k_m")  # doctest: +SKIP
    'passed'
    """
    out = Path(out)
    data_dir = data_dir or os.environ.get("UNER_DATA")
    data = Path(data_dir) if data_dir else None
    if bench:
        check_bench_data(recipe, data)
    check_calibration_data(recipe, data)
    index = _fresh_index(recipe, read_manifest(out) if (out / MANIFEST).is_file() else None)
    out.mkdir(parents=True, exist_ok=True)
    source = SourceFolder(recipe)
    build_variants(recipe, out, index, source, data_dir=data, force=force, progress=progress, n_threads=threads)
    if index["eos_token"] is None:  # an index from before the EOS token was recorded
        index["eos_token"] = eos_token_text(source.path()) or "</s>"
    _forget_unlisted(out, index, recipe)
    if bench:
        gate_variants(recipe, out, index, data, source, threads=threads)
    write_json_atomic(out / MANIFEST, index)
    return RecipeRun(out, index)


def _fresh_index(recipe: Recipe, previous: dict | None) -> dict:
    index = {
        "tool": TOOL_NAME,
        "tool_version": __version__,
        "kind": "variant-index",
        "model": recipe.name,
        "source": recipe.source,
        "revision": recipe.revision,
        "source_commit": None,
        "eos_token": None,
        "license": recipe.license,
        "base_model": recipe.base_model,
        "description": recipe.description,
        "prompt_template": TEMPLATE,
        "recipe": recipe.as_dict(),
        "imatrix": None,
        "variants": {},
        "files": {},
    }
    if previous and previous.get("model") == recipe.name:
        index["imatrix"] = previous.get("imatrix") if recipe.gguf_imatrix else None
        index["source_commit"] = previous.get("source_commit")
        index["eos_token"] = previous.get("eos_token")
        index["variants"] = previous.get("variants", {})
        index["files"] = previous.get("files", {})
    return index


def _forget_unlisted(out: Path, index: dict, recipe: Recipe) -> None:
    """Drop index entries of variants the recipe no longer names (their files stay on disk)."""
    wanted = {plan.name for plan in recipe.variants}
    for name in [n for n in index["variants"] if n not in wanted]:
        for file in index["variants"].pop(name)["files"]:
            index["files"].pop(file, None)
    owned = {f for entry in index["variants"].values() for f in entry["files"]}
    index["files"] = {name: entry for name, entry in sorted(index["files"].items()) if name in owned}
