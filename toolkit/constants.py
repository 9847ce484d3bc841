"""Enums and metadata keys of the export side."""

from __future__ import annotations

from enum import Enum

import gguf

from uner.errors import InputError

TOOL_NAME = "uner-toolkit"

# Provenance keys written into every GGUF we produce.
KEY_SOURCE = "uner.source"
KEY_SOURCE_SHA256 = "uner.source.sha256"
KEY_TOOL_VERSION = "uner.toolkit.version"
KEY_PROMPT_TEMPLATE = "uner.prompt_template"


class OutType(str, Enum):
    """Unquantized GGUF output types of the converter."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"


OUTTYPE_GGML = {
    OutType.f32: gguf.GGMLQuantizationType.F32,
    OutType.f16: gguf.GGMLQuantizationType.F16,
    OutType.bf16: gguf.GGMLQuantizationType.BF16,
}
OUTTYPE_FILE_TYPE = {
    OutType.f32: gguf.LlamaFileType.ALL_F32,
    OutType.f16: gguf.LlamaFileType.MOSTLY_F16,
    OutType.bf16: gguf.LlamaFileType.MOSTLY_BF16,
}

#: ``--quant`` names -> llama.cpp ``LLAMA_FTYPE_*`` constant names (resolved in quantize.py).
QUANT_TYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
    # i-quants: non-linear grids that llama.cpp fits best with an importance matrix (--imatrix)
    "iq4_xs": "LLAMA_FTYPE_MOSTLY_IQ4_XS",
    "iq4_nl": "LLAMA_FTYPE_MOSTLY_IQ4_NL",
    "iq3_m": "LLAMA_FTYPE_MOSTLY_IQ3_M",
}


#: ``--embedding-type`` names -> ggml type constant names: the token-embedding and output
#: tensors of quantized files (tied small models read their logits through token_embd).
EMBEDDING_TYPES = {
    "f32": "GGML_TYPE_F32",
    "f16": "GGML_TYPE_F16",
    "q8_0": "GGML_TYPE_Q8_0",
    "q6_k": "GGML_TYPE_Q6_K",
    # 4-bit, blocks of 32: they fit rows that are not a multiple of 256 (SmolLM2: 576)
    "q4_0": "GGML_TYPE_Q4_0",
    "iq4_nl": "GGML_TYPE_IQ4_NL",
}


def gguf_file_name(model_name: str, kind: str) -> str:
    """``<name>.<TYPE>.gguf``, the naming the llama.cpp ecosystem uses."""
    return f"{check_model_name(model_name)}.{kind.upper()}.gguf"


def check_model_name(name: str) -> str:
    """``name`` when it can be part of a file name: a path in ``--name`` (``../evil``) would
    write outside the output folder."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise InputError(f"expected a model name (--name) usable in file names (no slashes, not empty), got {name!r}")
    return name


#: the decoder projections of the ONNX model builder's graph, each one MatMul per layer
#: (``qkv_proj`` when it fuses q, k and v); ``--int8-projections`` names them
PROJECTIONS = ("qkv_proj", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def check_projections(names, what: str, error: type[Exception]) -> tuple[str, ...]:
    """``names`` as a sorted tuple of ``PROJECTIONS``, or ``error`` naming ``what`` (the option
    or key the names came from) and the unknown ones."""
    if unknown := sorted(set(names) - set(PROJECTIONS)):
        raise error(f"expected {what} among {', '.join(PROJECTIONS)}, got {', '.join(unknown)}")
    return tuple(sorted(set(names)))
