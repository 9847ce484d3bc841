"""The ONNX export folder contract, shared by the exporter and the ONNX Runtime backend.

Which precisions exist, which execution providers each one runs on, and how a folder names its
decoder and its inputs/outputs. Our exports carry ``manifest.json``; folders written by
onnxruntime-genai's builder (``genai_config.json``) or optimum (``model.onnx`` /
``decoder_model_merged.onnx`` with ``past_key_values.*`` inputs) load too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uner.errors import InputError, ModelNotFound
from uner.jsonfile import read_json

MANIFEST = "manifest.json"
GENAI_CONFIG = "genai_config.json"
PROMPT_FILE = "uner_prompt.json"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
#: our provider names, in the order ``auto`` tries them -> ONNX Runtime execution providers.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: where each precision can run. int4/int8 are MatMulNBits weight-only ops, which TensorRT does
#: not implement; fp16 runs on CPU too, but slowly (ORT's CPU kernels are fp32-first).
RUNS_ON = {
    "fp32": ("tensorrt", "cuda", "cpu"),
    "fp16": ("tensorrt", "cuda", "cpu"),
    "int8": ("cuda", "cpu"),
    "int4": ("cuda", "cpu"),
}
#: what an export can target (``uner-export onnx --device``).
EXPORT_TARGETS = {
    "fp32": ("cpu", "cuda", "tensorrt"),
    "fp16": ("cuda", "tensorrt"),
    "int8": ("cpu", "cuda"),
    "int4": ("cpu", "cuda"),
}
_DECODER_NAMES = ("model.onnx", "decoder_model_merged.onnx", "decoder_with_past_model.onnx")


def check_export_target(precision: str, device: str) -> None:
    """Refuse precision/device pairs the export cannot serve, saying what would work."""
    if precision not in EXPORT_TARGETS:
        raise InputError(f"expected a precision among {', '.join(PRECISIONS)}, got {precision!r}")
    if device not in PROVIDERS:
        raise InputError(f"expected a device among {', '.join(PROVIDERS)}, got {device!r}")
    targets = EXPORT_TARGETS[precision]
    if device not in targets:
        hint = {
            ("fp16", "cpu"): "fp16 is a GPU precision; for CPU export fp32, int8 or int4",
        }.get(
            (precision, device), f"{precision} weights use MatMulNBits, which TensorRT does not run; use --device cuda"
        )
        raise InputError(f"expected --device among {', '.join(targets)} for {precision}, got {device}: {hint}")


@dataclass(frozen=True)
class OnnxLayout:
    """Where a folder keeps its decoder, and what it declares about itself."""

    folder: Path
    model_file: Path
    precision: str | None
    providers: tuple[str, ...]
    context_length: int
    manifest: dict | None


def _decoder_file(folder: Path, manifest: dict | None, genai: dict | None) -> Path:
    named = (manifest or {}).get("onnx_file") or ((genai or {}).get("model", {}).get("decoder", {}).get("filename"))
    candidates = [named] if named else list(_DECODER_NAMES)
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise ModelNotFound(f"expected {' or '.join(candidates)} in the ONNX folder {folder}, found: {present}")


def _context_length(folder: Path, genai: dict | None) -> int:
    if genai and genai.get("model", {}).get("context_length"):
        return int(genai["model"]["context_length"])
    config = folder / "config.json"
    if config.is_file():
        return int(read_json(config).get("max_position_embeddings", 2048))
    return 2048


def is_onnx_folder(path: Path) -> bool:
    """True for a folder holding an ONNX decoder (ours, onnxruntime-genai's or optimum's)."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".onnx"
    return path.is_dir() and (
        read_json(path / MANIFEST).get("format") == "onnx"
        or (path / GENAI_CONFIG).is_file()
        or any((path / name).is_file() for name in _DECODER_NAMES)
    )


def read_layout(path: str | Path) -> OnnxLayout:
    """The layout of an ONNX folder (or of the folder of a given ``.onnx`` file)."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise ModelNotFound(f"expected an ONNX export folder, got {path}, which does not exist")
    manifest = read_json(folder / MANIFEST) or None
    if manifest is not None and manifest.get("format") != "onnx":
        raise ModelNotFound(f"expected an ONNX export, got a {manifest.get('format')!r} manifest in {folder}")
    genai = read_json(folder / GENAI_CONFIG) or None
    model_file = path if path.is_file() else _decoder_file(folder, manifest, genai)
    branches = (manifest or {}).get("branch_onnx_file")
    if not path.is_file() and branches and (folder / branches).is_file():
        model_file = folder / branches  # the same decoder with inputs that batch a text's suffixes
    precision = (manifest or {}).get("precision")
    providers = tuple((manifest or {}).get("providers") or RUNS_ON.get(precision or "", tuple(PROVIDERS)))
    return OnnxLayout(folder, model_file, precision, providers, _context_length(folder, genai), manifest)
