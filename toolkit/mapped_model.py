"""A ``LlamaForCausalLM`` whose weights stay in the checkpoint files (memory-mapped).

``from_pretrained`` copies every weight into anonymous memory: a 7B fp16 checkpoint took the
ONNX export past 23.7 GB RSS and the OOM killer on a 24 GiB machine. Here parameters are views
of ``np.memmap`` regions, so the weights cost page cache the kernel can evict, and the builder
reads each tensor when it writes it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np

from uner.toolkit.checkpoint import HFCheckpoint
from uner.toolkit.errors import CheckpointError
from uner.toolkit.safetensors_lazy import _DTYPES


def _mapped_tensor(entry, torch):
    array = np.memmap(entry.file, dtype=_DTYPES[entry.dtype], mode="r", offset=entry.begin, shape=entry.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only buffer: nothing ever writes to it
        tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if entry.dtype == "BF16" else tensor


def _state_dict(checkpoint: HFCheckpoint, torch) -> dict:
    if checkpoint._entries:
        return {name: _mapped_tensor(entry, torch) for name, entry in checkpoint._entries.items()}
    state = {}
    for file in checkpoint.weight_files:  # pickles: torch maps them itself
        state.update(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
    return state


def mapped_llama(checkpoint: HFCheckpoint):
    """The checkpoint as a transformers ``LlamaForCausalLM`` with file-backed weights."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(checkpoint.folder)
    with init_empty_weights(include_buffers=False):
        model = LlamaForCausalLM(config)
    state = {
        name: tensor for name, tensor in _state_dict(checkpoint, torch).items() if "rotary_emb.inv_freq" not in name
    }
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name in result.missing_keys if not (name == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"expected the weights LlamaForCausalLM needs in {checkpoint.folder}; "
            f"missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()


@contextlib.contextmanager
def builder_uses(model, builder_module) -> Iterator[None]:
    """Make onnxruntime-genai's builder take ``model`` instead of calling ``from_pretrained``.

    The builder loads weights with ``AutoModelForCausalLM.from_pretrained`` inside
    ``Model.load_weights``; swapping that one name keeps the rest of its code path intact.
    """

    class _Given:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return model

    original = builder_module.AutoModelForCausalLM
    builder_module.AutoModelForCausalLM = _Given
    try:
        yield
    finally:
        builder_module.AutoModelForCausalLM = original
