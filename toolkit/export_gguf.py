"""HF LLaMA checkpoint -> GGUF (f32/f16/bf16), streamed one tensor at a time."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gguf
import numpy as np

from uner import __version__
from uner.prompt import TEMPLATE
from uner.toolkit.checkpoint import HFCheckpoint, LlamaParams
from uner.toolkit.constants import (
    KEY_PROMPT_TEMPLATE,
    KEY_SOURCE,
    KEY_SOURCE_SHA256,
    KEY_TOOL_VERSION,
    OUTTYPE_FILE_TYPE,
    OUTTYPE_GGML,
    OutType,
    gguf_file_name,
)
from uner.toolkit.files import atomic_path, sha256_file
from uner.toolkit.tensor_map import LlamaTensorMap
from uner.toolkit.vocab import read_vocab, write_vocab

logger = logging.getLogger(__name__)
_INPUT_FILES = ("config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json")


def _output_dtype(outtype: OutType, shape: tuple[int, ...]) -> gguf.GGMLQuantizationType:
    # Norm vectors stay F32: llama.cpp computes them in F32 and they are tiny.
    return gguf.GGMLQuantizationType.F32 if len(shape) < 2 else OUTTYPE_GGML[outtype]


def _encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32, copy=False)
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16, copy=False)
    return gguf.quants.quantize(data.astype(np.float32, copy=False), qtype)


def _info_args(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> tuple:
    n = int(np.prod(shape))
    if qtype == gguf.GGMLQuantizationType.BF16:
        return (*shape[:-1], shape[-1] * 2), np.dtype(np.uint8), n * 2, qtype
    dtype = np.dtype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
    return shape, dtype, n * dtype.itemsize, None


def _add_hparams(writer: gguf.GGUFWriter, p: LlamaParams, outtype: OutType) -> None:
    writer.add_context_length(p.n_ctx)
    writer.add_embedding_length(p.n_embd)
    writer.add_block_count(p.n_layer)
    writer.add_feed_forward_length(p.n_ff)
    writer.add_head_count(p.n_head)
    writer.add_head_count_kv(p.n_head_kv)
    writer.add_rope_dimension_count(p.head_dim)
    writer.add_rope_freq_base(p.rope_theta)
    writer.add_layer_norm_rms_eps(p.rms_eps)
    writer.add_vocab_size(p.vocab_size)
    if p.head_dim != p.n_embd // p.n_head:
        writer.add_key_length(p.head_dim)
        writer.add_value_length(p.head_dim)
    if p.rope_scaling:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(p.rope_scaling["factor"])
    writer.add_file_type(OUTTYPE_FILE_TYPE[outtype])


def _add_provenance(writer: gguf.GGUFWriter, ckpt: HFCheckpoint, source: str) -> None:
    inputs = [ckpt.folder / n for n in _INPUT_FILES if (ckpt.folder / n).is_file()] + ckpt.weight_files
    digests = {file.name: sha256_file(file) for file in inputs}
    writer.add_string(KEY_SOURCE, source)
    writer.add_string(KEY_SOURCE_SHA256, json.dumps(digests, sort_keys=True))
    writer.add_string(KEY_TOOL_VERSION, __version__)
    writer.add_string(KEY_PROMPT_TEMPLATE, TEMPLATE)


def _planned_tensors(ckpt: HFCheckpoint, names: LlamaTensorMap):
    tensors = list(ckpt.tensors())
    # the names the weights really hold: a pickle shard index (checked up front) only says
    # what its shards should hold
    ckpt.check_complete(hf_name for hf_name, _, _ in tensors)
    planned = []
    for hf_name, shape, load in tensors:
        if names.is_skipped(hf_name):
            continue
        if hf_name == "lm_head.weight" and ckpt.params.tie_embeddings:
            continue  # tied: llama.cpp reuses token_embd when output.weight is absent
        planned.append((names.gguf_name(hf_name), tuple(shape), load))
    return planned


def export_gguf(
    source: str | Path,
    out_dir: str | Path,
    outtype: OutType | str = OutType.f16,
    *,
    name: str | None = None,
    allow_pickle: bool = False,
    unpermute: bool = True,
    progress: bool = True,
) -> Path:
    """Convert a Hugging Face LLaMA folder to one GGUF file and return its path.

    Tensors are read, converted and written one at a time, so peak memory stays near the
    largest tensor (the embedding) whatever the model size. The file appears under its final
    name only when complete. ``unpermute=False`` exists to prove the parity tests can fail.

    >>> export_gguf("UniNER-7B-type", "out", "f16")  # doctest: +SKIP
    PosixPath('out/UniNER-7B-type.F16.gguf')
    """
    outtype = OutType(outtype)
    ckpt = HFCheckpoint(source, allow_pickle=allow_pickle)
    p = ckpt.params
    vocab = read_vocab(ckpt.folder, p.vocab_size)
    names = LlamaTensorMap(p.n_layer, p.n_head, p.n_head_kv, unpermute=unpermute)
    planned = _planned_tensors(ckpt, names)
    final = Path(out_dir) / gguf_file_name(name or ckpt.name, outtype.value)
    with atomic_path(final) as tmp:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        writer.add_name(name or ckpt.name)
        _add_hparams(writer, p, outtype)
        write_vocab(writer, vocab)
        _add_provenance(writer, ckpt, str(source))
        for gguf_name, shape, _ in planned:
            writer.add_tensor_info(gguf_name, *_info_args(shape, _output_dtype(outtype, shape)))
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_weights(writer, planned, names, outtype, progress)
        writer.close()
    logger.info("wrote %s", final)
    return final


def _write_weights(writer, planned, names: LlamaTensorMap, outtype: OutType, progress: bool) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(planned), unit="tensor", desc="convert", leave=False)
    for gguf_name, shape, load in planned:
        data = names.transform(gguf_name, load())
        writer.write_tensor_data(_encode(data, _output_dtype(outtype, shape)))
        del data
        if bar:
            bar.update(1)
    if bar:
        bar.close()
