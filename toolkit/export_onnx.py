"""``export_onnx``: a HF LLaMA checkpoint -> an ONNX Runtime folder with KV cache.

The graph is built by onnxruntime-genai's model builder (fused GroupQueryAttention, rotary and
RMSNorm ops; MatMulNBits for int4/int8). It was chosen over optimum because it exported
SmolLM2-135M in 1.8 GB of RAM against optimum's 2.9 GB (~55-60 GB projected for 7B), and its
int4 decodes 3.5x faster on CPU. We wrap it: validate the checkpoint first, build into a
temporary folder from a memory-mapped copy of the weights (see :mod:`uner.toolkit.mapped_model`),
copy the source's own tokenizer files, add the prompt template and a manifest,
then move it into place so an interrupted export never looks finished
(:func:`uner.toolkit.files.install_folder`: ``--force`` replaces only the files the export owns).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from uner import __version__
from uner.errors import first_line
from uner.onnx_layout import EXPORT_TARGETS, MANIFEST, PROMPT_FILE, RUNS_ON, check_export_target
from uner.prompt import TEMPLATE
from uner.toolkit.adapter import merge_prefix, merged_source
from uner.toolkit.checkpoint import SIDE_FILES, HFCheckpoint
from uner.toolkit.constants import TOOL_NAME, check_model_name
from uner.toolkit.errors import CheckpointError, OutputExists
from uner.toolkit.files import (
    PARTIAL_SUFFIX,
    check_apart,
    file_entry,
    install_folder,
    partial_prefix,
    read_own_manifest,
    remove_stale_partials,
    umask,
    write_json_atomic,
)
from uner.toolkit.gptq import collect_hessians
from uner.toolkit.mapped_model import builder_uses, mapped_llama
from uner.toolkit.onnx_graph_edits import BRANCH_FILE, logits_at_last_position, write_branch_graph
from uner.toolkit.onnx_quantize import quantize_onnx
from uner.toolkit.onnx_settings import WeightQuantization, weight_quantization

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
#: files taken verbatim from the source, so the export tokenizes exactly like the checkpoint.
SOURCE_FILES = ("config.json", *SIDE_FILES)
#: what the builder writes besides the graph that we replace with the source's originals.
_BUILDER_COPIES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass
class OnnxExport:
    """What one ``uner-export onnx`` run wrote."""

    folder: Path
    precision: str
    device: str
    manifest: Path


def default_device(precision: str) -> str:
    return EXPORT_TARGETS.get(precision, ("cpu",))[0]


def provider_hints(precision: str, device: str) -> list[str]:
    """The providers an export is built for, best first (the manifest's execution-provider hints)."""
    if device == "cpu":
        return ["cpu"]
    return [p for p in RUNS_ON[precision] if p != "cpu"]


class _BuilderLog(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr`` while the builder runs: the exporting
    thread's prints go to our logger at debug level, every other thread's to the real stream
    (swapping ``sys.stdout`` is process-wide; this keeps the swap from swallowing them)."""

    def __init__(self, real) -> None:
        self._real = real
        self._owner = threading.get_ident()

    def write(self, text: str) -> int:
        if threading.get_ident() != self._owner:
            return self._real.write(text)
        for line in text.splitlines():
            if line.strip():
                logging.getLogger("onnxruntime_genai.builder").debug(line)
        return len(text)

    def flush(self) -> None:
        self._real.flush()


@contextlib.contextmanager
def _builder_prints_logged(stream_names: tuple[str, ...]) -> Iterator[None]:
    originals = {name: getattr(sys, name) for name in stream_names}
    for name, real in originals.items():
        setattr(sys, name, _BuilderLog(real))
    try:
        yield
    finally:
        for name, real in originals.items():
            setattr(sys, name, real)


#: the builder is driven through process-wide state (its weight loader swapped, sys.stdout
#: routed): one export at a time in a process
_BUILDER_LOCK = threading.Lock()


def _run_builder(checkpoint: HFCheckpoint, out: Path, precision: str, device: str, progress: bool) -> None:
    try:
        from onnxruntime_genai.models import builder
    except ImportError as exc:
        raise CheckpointError('expected onnxruntime-genai for ONNX export: pip install "uner-toolkit[export]"') from exc
    source = checkpoint.folder
    weights_module = sys.modules[builder.LlamaModel.load_weights.__module__]
    ep = "cpu" if device == "cpu" else "cuda"  # TensorRT runs the CUDA graph; ORT partitions it
    cache = out / ".builder-cache"
    streams = ("stdout",) if progress else ("stdout", "stderr")
    try:
        with _BUILDER_LOCK, _builder_prints_logged(streams), builder_uses(mapped_llama(checkpoint), weights_module):
            extra = builder.parse_extra_options(None, str(source), str(out), precision, ep, str(cache), [])
            builder.create_model(None, str(source), str(out), precision, ep, str(cache), **extra)
    except Exception as exc:  # the builder raises anything from OSError to NotImplementedError
        if os.environ.get("UNER_DEBUG") == "1":
            raise
        raise CheckpointError(f"onnxruntime-genai's builder failed on {source}: {first_line(exc)}") from exc
    shutil.rmtree(cache, ignore_errors=True)


def _build_graph(
    checkpoint: HFCheckpoint,
    out: Path,
    precision: str,
    device: str,
    quantization: WeightQuantization | None,
    progress: bool,
) -> None:
    """The builder writes float graphs; int4/int8 are a float graph quantized by a streaming pass."""
    if quantization is None:
        _run_builder(checkpoint, out, precision, device, progress)
        return
    stage = out / ".float-stage"
    hessians = None
    if quantization.gptq_data:  # measured first: a bad calibration file fails before the long build
        hessians = collect_hessians(
            checkpoint.folder, quantization.gptq_data, tokens=quantization.gptq_tokens, progress=progress
        )
    _run_builder(checkpoint, stage, "fp32" if device == "cpu" else "fp16", device, progress)
    with tqdm(desc=f"int{quantization.bits} weights", unit=" tensors", disable=not progress) as bar:
        quantize_onnx(
            stage / ONNX_FILE,
            out / ONNX_FILE,
            quantization.bits,
            quantization.block_size,
            quantization.accuracy_level,
            progress=lambda name: bar.update(),
            symmetric=quantization.symmetric,
            head_bits=quantization.head_bits,
            int8_projections=quantization.int8_projections,
            hessians=hessians,
        )
    for path in stage.iterdir():
        if not path.name.startswith(ONNX_FILE):
            os.replace(path, out / path.name)
    shutil.rmtree(stage)


def _opsets(model_file: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    return {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}


def _replace_tokenizer_files(source: Path, out: Path) -> None:
    for name in _BUILDER_COPIES:
        (out / name).unlink(missing_ok=True)
    for name in SOURCE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)


def _write_manifest(out: Path, fields: dict) -> Path:
    files = {path.name: file_entry(path) for path in sorted(out.iterdir()) if path.is_file() and path.name != MANIFEST}
    write_json_atomic(out / MANIFEST, {**fields, "files": files})
    return out / MANIFEST


def _owned_names(final: Path, force: bool) -> set[str]:
    """The names in ``final`` a forced export may replace: its previous manifest's files.

    Checked before any work: a file where the folder should be, another export's manifest,
    or (without ``force``) a folder with anything in it are refused.
    """
    if final.exists() and not final.is_dir():
        raise OutputExists(f"expected an output folder, got the existing file {final}")
    previous = read_own_manifest(final, "onnx") if final.is_dir() else None
    if final.is_dir() and any(final.iterdir()) and not force:
        raise OutputExists(f"expected a new or empty output folder, got existing {final}: pass --force to overwrite")
    # only plain names: a manifest naming "../x" or "sub/x" must not make us delete outside
    return {MANIFEST, *(name for name in (previous or {}).get("files", {}) if Path(name).name == name)}


def _build_folder(
    checkpoint: HFCheckpoint,
    final: Path,
    precision: str,
    device: str,
    quantization: WeightQuantization | None,
    fields: dict,
    owned: set[str],
    progress: bool,
) -> Path:
    """Build the export in a hidden .partial folder and move it to ``final`` when complete."""
    building = Path(tempfile.mkdtemp(prefix=partial_prefix(final.name), suffix=PARTIAL_SUFFIX, dir=final.parent))
    try:
        logger.info("building %s ONNX for %s from %s", precision, device, checkpoint.folder)
        _build_graph(checkpoint, building, precision, device, quantization, progress)
        last_only = logits_at_last_position(building / ONNX_FILE)
        # CPU exports only: measured there; CUDA's GroupQueryAttention with a bias is untested here
        branches = last_only and device == "cpu" and write_branch_graph(building / ONNX_FILE, building / BRANCH_FILE)
        _replace_tokenizer_files(checkpoint.folder, building)
        write_json_atomic(building / PROMPT_FILE, {"template": TEMPLATE, "greedy": True, "max_new_tokens": 256})
        _write_manifest(
            building,
            {
                "tool": TOOL_NAME,
                "tool_version": __version__,
                **fields,
                "format": "onnx",
                "precision": precision,
                "device": device,
                "providers": provider_hints(precision, device),
                "onnx_file": ONNX_FILE,
                "branch_onnx_file": BRANCH_FILE if branches else None,  # what uner's backend runs
                "opsets": _opsets(building / ONNX_FILE),
                "quantization": quantization.as_dict() if quantization else None,
                "builder": f"onnxruntime-genai {_builder_version()}",
                "logits": "last position" if last_only else "every position",  # toolkit/onnx_graph_edits.py
                "prompt_template": TEMPLATE,
            },
        )
        os.chmod(building, 0o777 & ~umask())  # mkdtemp makes it private; outputs are ordinary folders
        install_folder(building, final, owned)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final / MANIFEST


def export_onnx(
    source: str | Path,
    out_dir: str | Path,
    precision: str = "int4",
    device: str | None = None,
    *,
    block_size: int | None = None,
    accuracy_level: int | None = None,
    symmetric: bool | None = None,
    head_bits: int | None = None,
    int8_projections: tuple[str, ...] = (),
    gptq_data: tuple[str | Path, ...] = (),
    gptq_tokens: int | None = None,
    name: str | None = None,
    adapter: str | Path | None = None,
    allow_pickle: bool = False,
    force: bool = False,
    progress: bool = True,
) -> OnnxExport:
    """Export ``source`` (a HF LLaMA folder) to an ONNX Runtime folder ``out_dir``.

    Args:
        precision: ``fp32`` (reference), ``fp16`` (GPU), ``int8`` or ``int4`` (weight-only).
        device: ``cpu``, ``cuda`` or ``tensorrt``; default: the precision's natural target.
        block_size: int4/int8 quantization block (default 32); weight-only, per block of K.
        accuracy_level: int4/int8 MatMulNBits compute type (4 = int8 activations, the CPU default).
        symmetric: blocks centred on zero, or (False) with a zero point per block; default
            asymmetric int4 and symmetric int8, as measured best.
        head_bits: the lm_head's width (and its tied embedding's), 4 or 8; default the model's.
        int8_projections: int4 only: decoder projections (``qkv_proj``, ``up_proj``...) kept at
            8 bits in every layer, the ones a sensitivity sweep finds the int4 loss in.
        gptq_data: int4 only: training files (CoNLL/BIO or UniNER JSON) whose UniNER conversations
            (``gptq_tokens`` of them, default 50k) measure each layer's input Hessian; the 4-bit
            weights are then rounded by GPTQ instead of to nearest. Never the bench's eval files.
        adapter: a PEFT LoRA folder merged into ``source`` before export.
        allow_pickle: also read ``pytorch_model*.bin`` (as UniNER's own releases are); trusted files only.

    >>> export_onnx("UniNER-7B-type", "out/onnx-int4", "int4").folder  # doctest: +SKIP
    PosixPath('out/onnx-int4')
    """
    started = time.time()
    device = device or default_device(precision)
    check_export_target(precision, device)
    quantization = weight_quantization(
        precision,
        device,
        block_size,
        accuracy_level,
        symmetric,
        head_bits,
        tuple(int8_projections),
        tuple(map(Path, gptq_data)),
        gptq_tokens,
    )
    source_checkpoint = HFCheckpoint(source, allow_pickle=allow_pickle)  # complete and readable, or refused
    model_name = check_model_name(name or source_checkpoint.name)
    final = Path(out_dir)
    target = final.resolve()  # "--out ." has no name to build a sibling folder from
    check_apart(final, Path(source))
    if adapter is not None:
        check_apart(final, Path(adapter), "adapter")
    owned = _owned_names(final, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    with merged_source(source, adapter, target.parent, owner=target.name) as merged:
        checkpoint = HFCheckpoint(merged, allow_pickle=allow_pickle) if adapter is not None else source_checkpoint
        fields = {"model": model_name, "source": str(source), "adapter": str(adapter) if adapter else None}
        _build_folder(checkpoint, target, precision, device, quantization, fields, owned, progress)
    # build and merge folders of runs that were killed (same output name, untouched since we started)
    remove_stale_partials(target.parent, partial_prefix(target.name), started)
    remove_stale_partials(target.parent, merge_prefix(target.name), started)
    logger.info("wrote %s", final)
    return OnnxExport(final, precision, device, final / MANIFEST)


def _builder_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime-genai")
