"""The quantization ladder: one converted GGUF -> several llama.cpp quant types."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import numpy as np

from uner.checks import check_threads
from uner.errors import BackendUnavailable, InputError
from uner.llamacpp_backend import route_llama_logs
from uner.toolkit.constants import EMBEDDING_TYPES, QUANT_TYPES, gguf_file_name
from uner.toolkit.errors import QuantizeError
from uner.toolkit.files import atomic_path

logger = logging.getLogger(__name__)


def parse_quant_types(spec: str | list[str] | None) -> list[str]:
    """``"q8_0,q4_k_m"`` -> ``["q8_0", "q4_k_m"]``, checked against :data:`QUANT_TYPES`."""
    if not spec:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    types = list(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
    unknown = [t for t in types if t not in QUANT_TYPES]
    if unknown:
        raise InputError(f"expected quant types among {', '.join(QUANT_TYPES)}, got {', '.join(unknown)}")
    return types


def quantized_path(source: Path, model_name: str, quant: str) -> Path:
    return source.parent / gguf_file_name(model_name, quant)


def check_embedding_type(name: str | None) -> str | None:
    if name is not None and name not in EMBEDDING_TYPES:
        raise InputError(f"expected an embedding type among {', '.join(EMBEDDING_TYPES)}, got {name!r}")
    return name


def quantize_gguf(
    source: Path,
    out: Path,
    quant: str,
    n_threads: int | None = None,
    embedding_type: str | None = None,
    importance: dict[str, np.ndarray] | None = None,
) -> Path:
    """Quantize ``source`` to ``out`` with llama.cpp; ``out`` appears only when complete.
    ``embedding_type`` overrides the type of the token-embedding and output tensors;
    ``importance`` (GGUF tensor name -> mean squared input per column, as
    :meth:`uner.toolkit.imatrix.ImportanceMatrix.means` gives) weighs the rounding errors, as
    ``llama-quantize --imatrix`` does."""
    n_threads = check_threads(n_threads)  # llama.cpp starts that many threads, unchecked
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendUnavailable("quantize", "llama-cpp-python", "export") from exc
    route_llama_logs(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = n_threads
    if check_embedding_type(embedding_type):
        params.token_embedding_type = params.output_tensor_type = getattr(llama_cpp, EMBEDDING_TYPES[embedding_type])
    keep_alive = _set_importance(llama_cpp, params, importance) if importance else None
    with atomic_path(out) as tmp:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
        if status != 0:
            raise QuantizeError(f"expected llama.cpp to quantize {source.name} to {quant}, got status {status}")
    del keep_alive  # the buffers llama.cpp read through params.imatrix, alive until it returned
    return out


def _set_importance(llama_cpp, params, importance: dict[str, np.ndarray]) -> list:
    """Point ``params.imatrix`` at a null-terminated array of ``llama_model_imatrix_data``;
    returns what must stay alive while llama.cpp reads it."""
    entries = (llama_cpp.llama_model_imatrix_data * (len(importance) + 1))()  # zeroed: the last ends it
    keep: list = [entries]
    for entry, (name, values) in zip(entries, importance.items()):
        data = np.ascontiguousarray(values, dtype=np.float32)
        encoded = name.encode()
        keep += [data, encoded]
        entry.name = encoded
        entry.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entry.size = data.size
    params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    return keep


def quantize_ladder(
    source: Path,
    model_name: str,
    quants: list[str],
    *,
    n_threads: int | None = None,
    embedding_type: str | None = None,
    importance: dict[str, np.ndarray] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Quantize ``source`` to every type in ``quants``; files are ``<name>.<TYPE>.gguf``."""
    outputs = []
    bar = None
    if progress and quants:
        from tqdm import tqdm

        bar = tqdm(total=len(quants), unit="variant", desc="quantize", leave=False)
    for quant in quants:
        if bar:
            bar.set_postfix_str(quant)
        outputs.append(
            quantize_gguf(
                source, quantized_path(source, model_name, quant), quant, n_threads, embedding_type, importance
            )
        )
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return outputs
