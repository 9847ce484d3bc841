"""``export_gguf_ladder``: convert, quantize and record a manifest, all-or-nothing per file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from uner import __version__
from uner.checks import check_threads
from uner.errors import InputError
from uner.prompt import TEMPLATE
from uner.toolkit.adapter import merge_prefix, merged_source
from uner.toolkit.checkpoint import HFCheckpoint
from uner.toolkit.constants import TOOL_NAME, OutType, check_model_name, gguf_file_name
from uner.toolkit.export_gguf import export_gguf
from uner.toolkit.files import (
    MANIFEST,
    check_writable,
    read_own_manifest,
    remove_stale_partials,
    update_manifest,
)
from uner.toolkit.imatrix import imatrix_record, read_imatrix
from uner.toolkit.quantize import check_embedding_type, parse_quant_types, quantize_ladder

logger = logging.getLogger(__name__)


@dataclass
class GGUFExport:
    """What one ``uner-export gguf`` run wrote."""

    base: Path
    quantized: list[Path] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [self.base, *self.quantized]


def _check_inputs_kept(outputs: list[Path], folders: list[Path], previous: dict | None) -> None:
    """Refuse an output that would replace a file of the source (or adapter) folder, unless
    the folder's own GGUF manifest lists it as an earlier output of ours."""
    ours = set((previous or {}).get("files", {})) | {MANIFEST}  # read_own_manifest vetted it
    inputs = {folder.resolve() for folder in folders}
    for path in outputs:
        if path.parent.resolve() in inputs and path.exists() and path.name not in ours:
            raise InputError(
                f"expected outputs beside the source files, got {path}, which would overwrite a file of "
                f"the source folder {path.parent}: choose another --out"
            )


def export_gguf_ladder(
    source: str | Path,
    out_dir: str | Path,
    outtype: OutType | str = OutType.f16,
    quants: str | list[str] | None = None,
    *,
    name: str | None = None,
    adapter: str | Path | None = None,
    allow_pickle: bool = False,
    force: bool = False,
    n_threads: int | None = None,
    embedding_type: str | None = None,
    imatrix: str | Path | None = None,
    progress: bool = True,
) -> GGUFExport:
    """Convert ``source`` to GGUF ``outtype``, quantize it to each of ``quants``, write manifest.json.

    Every input is checked before anything is written: the checkpoint, the quant names and
    whether outputs exist (refused unless ``force``). ``adapter``: a PEFT LoRA folder merged
    into ``source`` first. ``embedding_type`` (f32, f16, q8_0, q6_k) keeps the token-embedding
    and output tensors of the quantized files at that type. ``imatrix``: an importance matrix
    file (``uner-export imatrix``, or llama.cpp's GGUF format) the quantizer weighs errors by.

    >>> export_gguf_ladder("UniNER-7B-type", "out", "f16", "q8_0,q4_k_m").files  # doctest: +SKIP
    [PosixPath('out/UniNER-7B-type.F16.gguf'), PosixPath('out/UniNER-7B-type.Q8_0.gguf'), ...]
    """
    started = time.time()
    outtype = OutType(outtype)
    quant_list = parse_quant_types(quants)
    check_embedding_type(embedding_type)
    if n_threads is not None:
        check_threads(n_threads)
    matrix = read_imatrix(Path(imatrix)) if imatrix else None  # a bad file: refused before any work
    checkpoint = HFCheckpoint(source, allow_pickle=allow_pickle)  # complete and readable, or refused
    model_name = check_model_name(name or checkpoint.name)
    out = Path(out_dir)
    previous = read_own_manifest(out, "gguf")  # another export's manifest would be overwritten
    planned = [out / gguf_file_name(model_name, kind) for kind in [outtype.value, *quant_list]]
    check_writable(planned, force)
    _check_inputs_kept([*planned, out / MANIFEST], [checkpoint.folder, *([Path(adapter)] if adapter else [])], previous)
    with merged_source(source, adapter, out, owner=model_name) as merged:
        base = export_gguf(merged, out, outtype, name=model_name, allow_pickle=allow_pickle, progress=progress)
    quantized = quantize_ladder(
        base,
        model_name,
        quant_list,
        n_threads=n_threads,
        embedding_type=embedding_type,
        importance=matrix.means() if matrix else None,
        progress=progress,
    )
    result = GGUFExport(base=base, quantized=quantized)
    result.manifest = update_manifest(
        out,
        result.files,
        {
            "tool": TOOL_NAME,
            "tool_version": __version__,
            "model": model_name,
            "source": str(source),
            "adapter": str(adapter) if adapter else None,
            "embedding_type": embedding_type,
            "imatrix": imatrix_record(Path(imatrix), matrix) if matrix else None,
            "format": "gguf",
            "prompt_template": TEMPLATE,
        },
    )
    # the .partial leftovers of each output file went when it was written (atomic_path); a
    # killed adapter merge leaves a scratch folder named after the model
    remove_stale_partials(out, merge_prefix(model_name), started)
    logger.info("wrote %s", out / MANIFEST)
    return result
