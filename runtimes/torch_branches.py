"""The branch pool on transformers (:class:`uner.engine.BranchPool`).

The prefix runs once; its ``DynamicCache`` is repeated over the branches. Suffixes of
different lengths run in one pass, padded on the left (between the prefix and the suffix) and
masked out, with explicit position ids so every real token keeps the position it has in its
own per-query prompt; all suffixes then end in the same column, whose logits start decoding.

Texts join while others are decoding: the new rows and the running ones are padded on the left
to one cache width and stacked, so a text's long answers share steps with the next text's
short ones (a CPU step of this size costs about the same for 1 row as for 20: its time is
per-call overhead, not arithmetic).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from uner.torch_backend import TorchExtractor

#: rows decoded at once; a text's branches join only when all of them fit beside the running ones
DEFAULT_MAX_BRANCHES = 32


class TorchBranches:
    """Running branches (of one or several texts) as the rows of one padded KV cache."""

    def __init__(self, extractor: TorchExtractor, max_branches: int = DEFAULT_MAX_BRANCHES) -> None:
        self._owner = extractor
        import torch  # the torch backend has imported it already

        self._torch = torch
        self._max_branches = max_branches
        self._rows: list[int] = []  # the handle of each batch row
        self._alive: set[int] = set()
        self._next_handle = 0
        self._cache = self._mask = self._positions = None

    def room(self, prefix_len: int, suffix_lens: Sequence[int], max_new_tokens: int) -> int:
        """All of a text's branches when they fit beside the running ones (a text sent in parts
        would encode its prefix once per part); an idle pool takes as many as it can."""
        if not self._alive:
            return min(len(suffix_lens), self._max_branches)
        return len(suffix_lens) if len(self._alive) + len(suffix_lens) <= self._max_branches else 0

    def _forward(self, ids, mask, positions, cache):
        with self._torch.inference_mode(), self._owner.threads():
            # logits of the last column only: the output layer over every prompt position is
            # a fifth of SmolLM2's prefill work, for rows nobody reads
            out = self._owner.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits[:, -1].float().cpu().numpy(), out.past_key_values

    def _tensor(self, rows) -> object:
        return self._torch.tensor(rows, dtype=self._torch.long, device=self._owner.device)

    def _encode_stem(self, stem: Sequence[int]):
        """The stem's KV, encoded from nothing (kept in the owner's ``stem_kv``)."""
        count = len(stem)
        return self._forward(
            self._tensor([list(stem)]), self._tensor([[1] * count]), self._tensor([list(range(count))]), None
        )[1]

    def _prefix_cache(self, prefix: Sequence[int], stem: int):
        """The prefix's KV (one row): its first ``stem`` tokens from the kept stem KV (a copy:
        the forward pass extends a cache in place), the rest encoded after it."""
        past = None
        if stem:
            past = copy.deepcopy(self._owner.stem_kv.fetch(prefix[:stem], self._encode_stem))
        start = len(prefix)
        _, cache = self._forward(
            self._tensor([list(prefix[stem:])]),
            self._tensor([[1] * start]),
            self._tensor([list(range(stem, start))]),
            past,
        )
        return cache

    def add(
        self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], stem: int = 0
    ) -> tuple[list[int], np.ndarray]:
        start, width = len(prefix), max(len(s) for s in suffixes)
        cache = self._prefix_cache(prefix, stem)
        cache.batch_repeat_interleave(len(suffixes))
        pad = self._owner.eos_id
        ids, mask, positions = [], [], []
        for suffix in suffixes:
            gap = width - len(suffix)
            ids.append([pad] * gap + list(suffix))
            mask.append([1] * start + [0] * gap + [1] * len(suffix))
            positions.append([start] * gap + list(range(start, start + len(suffix))))
        mask = self._tensor(mask)
        logits, cache = self._forward(self._tensor(ids), mask, self._tensor(positions), cache)
        handles = list(range(self._next_handle, self._next_handle + len(suffixes)))
        self._next_handle += len(suffixes)
        self._join(cache, mask, self._tensor([start + len(s) for s in suffixes]), handles)
        return handles, logits

    def _join(self, cache, mask, positions, handles: list[int]) -> None:
        """Stack new rows under the running ones, left-padding the narrower cache."""
        if not self._alive:
            self._cache, self._mask, self._positions, self._rows = cache, mask, positions, handles
        else:
            torch = self._torch
            self._keep([row for row, handle in enumerate(self._rows) if handle in self._alive])  # finished ones leave
            width = max(mask.shape[1], self._mask.shape[1])
            for old, new in zip(self._cache.layers, cache.layers):
                old.keys = torch.cat([_left_pad(torch, old.keys, width), _left_pad(torch, new.keys, width)])
                old.values = torch.cat([_left_pad(torch, old.values, width), _left_pad(torch, new.values, width)])
            self._mask = torch.cat([_left_pad(torch, self._mask, width), _left_pad(torch, mask, width)])
            self._positions = torch.cat([self._positions, positions])
            self._rows = self._rows + handles
        self._alive.update(handles)

    def step(self, branches: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        torch = self._torch
        if list(branches) != self._rows:  # finished branches leave the batch
            self._keep([self._rows.index(handle) for handle in branches])
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        logits, self._cache = self._forward(
            self._tensor([[t] for t in tokens]), self._mask, self._positions[:, None], self._cache
        )
        self._positions = self._positions + 1
        return logits

    def _keep(self, rows: list[int]) -> None:
        """Keep these batch rows; cut the leading cache columns no kept row attends to."""
        self._rows = [self._rows[row] for row in rows]
        keep = self._tensor(rows)
        self._mask, self._positions = self._mask[keep], self._positions[keep]
        unused = int(self._mask.any(dim=0).long().argmax())
        for layer in self._cache.layers:
            layer.keys = layer.keys[keep, :, unused:]
            layer.values = layer.values[keep, :, unused:]
        self._mask = self._mask[:, unused:]

    def drop(self, branch: int) -> None:
        self._alive.discard(branch)
        if not self._alive:  # nothing left running: free the cache now
            self._rows, self._cache = [], None

    def reset(self) -> None:
        """Forget every row (after a failed or abandoned run) and free the cache."""
        self._alive.clear()
        self._rows, self._cache = [], None


def _left_pad(torch, tensor, width: int):
    """``tensor`` (a mask ``[rows, cols]`` or a cache ``[rows, heads, cols, dim]``) widened to
    ``width`` columns with zeros on the left."""
    axis = 1 if tensor.dim() == 2 else 2
    missing = width - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)
