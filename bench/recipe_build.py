"""Building a recipe's variants into its output folder, each recorded in the variant index.

A variant whose files still match the index (sha256; a file unchanged since it last matched is
not hashed again, see :mod:`uner.cache`) and whose build settings are unchanged is kept. GGUF
quantizations of a recipe with ``[gguf] imatrix`` weigh their rounding by an importance matrix
measured once on the recipe's calibration files (``imatrix.gguf`` beside the variants).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from uner import __version__
from uner.cache import CheckedFiles
from uner.manifest import MANIFEST, file_entry, sha256_file
from uner.tokenizer import eos_token_text
from uner.toolkit.constants import gguf_file_name
from uner.toolkit.files import write_json_atomic
from uner.toolkit.gates import UNCHECKED
from uner.toolkit.recipes import Recipe, VariantPlan

if TYPE_CHECKING:
    from uner.bench.recipe_run import SourceFolder

logger = logging.getLogger(__name__)

IMATRIX_FILE = "imatrix.gguf"


def _build_settings(recipe: Recipe, plan: VariantPlan) -> dict:
    settings = {
        "source": recipe.source,
        "revision": recipe.revision,
        "format": plan.format,
        "kind": plan.kind,
        "tool_version": __version__,
    }
    if plan.format == "gguf":
        settings["outtype"] = recipe.gguf_outtype
        if _weighed(recipe, plan):
            settings["imatrix"] = recipe.gguf_imatrix.as_dict()
    else:
        settings["device"] = plan.device
        if options := _onnx_options(recipe, plan):
            settings["quantization"] = options
    return settings


def _onnx_options(recipe: Recipe, plan: VariantPlan) -> dict:
    """The recipe's int4/int8 options (asymmetric blocks, the head's bits) for this ONNX variant;
    int8 projections and GPTQ only for int4 (an int8 model has nothing narrower to widen, and
    GPTQ rounds only 4-bit weights)."""
    options = dict(recipe.onnx_quantization) if plan.kind in ("int4", "int8") else {}
    if plan.kind != "int4":
        for int4_only in ("int8_projections", "gptq_data", "gptq_tokens"):
            options.pop(int4_only, None)
    return options


def _is_built(out: Path, index: dict, plan: VariantPlan, settings: dict, checked: CheckedFiles) -> bool:
    entry = index["variants"].get(plan.name)
    if not entry or entry.get("build") != settings:
        return False
    names = entry.get("files", [])
    present = bool(names) and all(n in index["files"] for n in names)
    return present and not any(checked.check(out / n, index["files"][n], n) for n in names)


def _weighed(recipe: Recipe, plan: VariantPlan) -> bool:
    """Whether the variant is a GGUF quantization weighed by the recipe's importance matrix."""
    return recipe.gguf_imatrix is not None and plan.format == "gguf" and plan.kind != recipe.gguf_outtype


class Importance:
    """The recipe's importance matrix: measured at most once, only if a quantization needs it,
    and reused from ``imatrix.gguf`` while its settings and bytes match the index."""

    def __init__(self, recipe: Recipe, out: Path, index: dict, data_dir: Path | None, n_threads: int | None) -> None:
        self._recipe, self._out, self._index = recipe, out, index
        self._data_dir, self._threads = data_dir, n_threads
        self._means: dict | None = None

    def means(self, source: Path, progress: bool) -> dict:
        if self._means is None:
            from uner.toolkit.imatrix import collect, imatrix_record, read_imatrix, write_imatrix

            plan, path = self._recipe.gguf_imatrix, self._out / IMATRIX_FILE
            record = self._index.get("imatrix") or {}
            if record.get("settings") == plan.as_dict() and path.is_file() and sha256_file(path) == record["sha256"]:
                matrix = read_imatrix(path)
            else:
                files = [Path(self._data_dir) / name for name in plan.data]
                logger.info("imatrix: measuring on %s", ", ".join(plan.data))
                matrix = collect(
                    source,
                    files,
                    tokens=plan.tokens,
                    n_threads=self._threads,
                    progress=progress,
                    output=plan.output_head,
                )
                write_imatrix(path, matrix)
                self._index["imatrix"] = {
                    **imatrix_record(path, matrix),
                    "datasets": list(plan.data),  # as the recipe names them, not just file names
                    "tokens": matrix.tokens,
                    "settings": plan.as_dict(),
                }
            self._means = matrix.means()
        return self._means


def _build_gguf(
    recipe: Recipe,
    source: Path,
    out: Path,
    plan: VariantPlan,
    progress: bool,
    n_threads: int | None,
    importance: Importance,
) -> None:
    from uner.toolkit.export_gguf import export_gguf
    from uner.toolkit.quantize import quantize_gguf

    folder = out / "gguf"
    base = folder / gguf_file_name(recipe.name, recipe.gguf_outtype)
    if plan.kind == recipe.gguf_outtype or not base.is_file():
        base.unlink(missing_ok=True)
        export_gguf(
            source, folder, recipe.gguf_outtype, name=recipe.name, allow_pickle=recipe.allow_pickle, progress=progress
        )
    if plan.kind != recipe.gguf_outtype:
        means = importance.means(source, progress) if _weighed(recipe, plan) else None
        quantize_gguf(base, folder / gguf_file_name(recipe.name, plan.kind), plan.kind, n_threads, importance=means)


def _build_onnx(
    recipe: Recipe, source: Path, out: Path, plan: VariantPlan, progress: bool, data_dir: Path | None
) -> None:
    from uner.toolkit.export_onnx import export_onnx

    options = _onnx_options(recipe, plan)
    if "gptq_data" in options:
        options["gptq_data"] = tuple(Path(data_dir or ".") / name for name in options["gptq_data"])
    export_onnx(
        source,
        out / plan.path(recipe.name),
        plan.kind,
        plan.device,
        **options,
        name=recipe.name,
        allow_pickle=recipe.allow_pickle,
        force=True,
        progress=progress,
    )


def _record_files(out: Path, index: dict, plan: VariantPlan, model: str) -> list[str]:
    """Hash the variant's files into the index; the names it owns, POSIX paths from ``out``."""
    target = out / plan.path(model)
    paths = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    names = [p.relative_to(out).as_posix() for p in paths]
    for name, path in zip(names, paths):
        index["files"][name] = file_entry(path)
    return names


def build_variants(
    recipe: Recipe,
    out: Path,
    index: dict,
    source: SourceFolder,
    *,
    data_dir: Path | None,
    force: bool,
    progress: bool,
    n_threads: int | None,
) -> None:
    """Build the variants whose files or settings differ from the index, recording each."""
    checked = CheckedFiles()
    importance = Importance(recipe, out, index, data_dir, n_threads)
    for plan in recipe.variants:
        settings = _build_settings(recipe, plan)
        if not force and _is_built(out, index, plan, settings, checked):
            logger.info("%s: kept (files match the index)", plan.name)
            continue
        index["source_commit"] = source.commit()
        index["eos_token"] = eos_token_text(source.path()) or "</s>"
        logger.info("%s: building", plan.name)
        if plan.format == "gguf":
            _build_gguf(recipe, source.path(), out, plan, progress, n_threads, importance)
        else:
            _build_onnx(recipe, source.path(), out, plan, progress, data_dir)
        index["variants"][plan.name] = {
            "format": plan.format,
            "kind": plan.kind,
            "path": plan.path(recipe.name),
            "files": _record_files(out, index, plan, recipe.name),
            "build": settings,
            "max_f1_drop": plan.max_f1_drop,
            "status": UNCHECKED,
            "bench": None,
        }
        write_json_atomic(out / MANIFEST, index)
    checked.save()
