"""Hugging Face LLaMA tensor names -> GGUF names, and the Q/K rotary un-permutation.

HF's LLaMA port reorders the rows of ``q_proj``/``k_proj`` so that rotary embedding can rotate
the two halves of each head ("rotate_half"); llama.cpp rotates interleaved pairs, as Meta's
original weights do. Converting therefore has to undo HF's row permutation per head.
"""

from __future__ import annotations

import gguf
import numpy as np

from uner.toolkit.errors import CheckpointError

#: Buffers some checkpoints saved alongside the weights; llama.cpp recomputes them.
SKIPPED_SUFFIXES = (".rotary_emb.inv_freq",)


def unpermute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of one Q or K projection from HF's half-split order to interleaved pairs.

    Within each head HF stores rows ``[x0, x2, x4, ..., x1, x3, x5, ...]``; llama.cpp wants
    ``[x0, x1, x2, x3, ...]``. ``n_head`` is the number of heads of *this* projection
    (the KV head count for K under grouped-query attention).
    """
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise CheckpointError(f"expected Q/K rows divisible by 2 x {n_head} heads, got {rows}")
    head_dim = rows // n_head
    by_half = weight.reshape(n_head, 2, head_dim // 2, *weight.shape[1:])
    return by_half.swapaxes(1, 2).reshape(weight.shape)


class LlamaTensorMap:
    """Maps HF tensor names to GGUF names and applies the per-tensor transform."""

    def __init__(self, n_blocks: int, n_head: int, n_head_kv: int, unpermute: bool = True) -> None:
        self._names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
        self._n_head = n_head
        self._n_head_kv = n_head_kv
        self._unpermute = unpermute

    @staticmethod
    def is_skipped(hf_name: str) -> bool:
        return hf_name.endswith(SKIPPED_SUFFIXES)

    def gguf_name(self, hf_name: str) -> str:
        name = self._names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise CheckpointError(f"expected a LLaMA tensor name, got {hf_name!r}, which has no GGUF mapping")
        return name

    def transform(self, gguf_name: str, data: np.ndarray) -> np.ndarray:
        """The tensor as llama.cpp expects it (rotary rows reordered for Q and K)."""
        if not self._unpermute:
            return data
        if gguf_name.endswith("attn_q.weight"):
            return unpermute_rotary(data, self._n_head)
        if gguf_name.endswith("attn_k.weight"):
            return unpermute_rotary(data, self._n_head_kv)
        return data
