"""``export_gguf_ladder``: convert, quantize and record a manifest, all-or-nothing per file."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from runtimes import __version__
from runtimes.prompt import TEMPLATE
from toolkit.adapter import merged_source
from toolkit.checkpoint import HFCheckpoint
from toolkit.constants import TOOL_NAME, OutType, gguf_file_name
from toolkit.files import MANIFEST, check_writable, update_manifest
from toolkit.quantize import check_embedding_type, parse_quant_types, quantize_ladder
from toolkit.export_gguf import export_gguf

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
    progress: bool = True,
) -> GGUFExport:
    """Convert ``source`` to GGUF ``outtype``, quantize it to each of ``quants``, write manifest.json.

    Every input is checked before anything is written: the checkpoint, the quant names and
    whether outputs exist (refused unless ``force``). ``adapter``: a PEFT LoRA folder merged
    into ``source`` first. ``embedding_type`` (f32, f16, q8_0, q6_k) keeps the token-embedding
    and output tensors of the quantized files at that type.

    >>> export_gguf_ladder("UniNER-7B-type", "out", "f16", "q8_0,q4_k_m").files  # doctest: +SKIP
    [PosixPath('out/UniNER-7B-type.F16.gguf'), PosixPath('out/UniNER-7B-type.Q8_0.gguf'), ...]
    """
    outtype = OutType(outtype)
    quant_list = parse_quant_types(quants)
    check_embedding_type(embedding_type)
    model_name = name or HFCheckpoint(source, allow_pickle=allow_pickle).name
    out = Path(out_dir)
    planned = [out / gguf_file_name(model_name, kind) for kind in [outtype.value, *quant_list]]
    check_writable(planned, force)
    with merged_source(source, adapter, out) as merged:
        base = export_gguf(merged, out, outtype, name=model_name, allow_pickle=allow_pickle, progress=progress)
    quantized = quantize_ladder(base, model_name, quant_list, n_threads=n_threads, embedding_type=embedding_type, progress=progress)
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
            "format": "gguf",
            "prompt_template": TEMPLATE,
        },
    )
    logger.info("wrote %s", out / MANIFEST)
    return result
