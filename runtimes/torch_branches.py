"""The branch pool on transformers (:class:`runtimes.engine.BranchPool`), one text at a time.

The prefix runs once; its ``DynamicCache`` is repeated over the branches. Suffixes of
different lengths run in one pass, padded on the left (between the prefix and the suffix) and
masked out, with explicit position ids so every real token keeps the position it has in its
own per-query prompt; all suffixes then end in the same column, whose logits start decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from runtimes.torch_backend import TorchExtractor

DEFAULT_MAX_BRANCHES = 16


class TorchBranches:
    """The branches of one text and their KV cache."""

    def __init__(self, extractor: TorchExtractor, max_branches: int = DEFAULT_MAX_BRANCHES) -> None:
        self._owner = extractor
        self._torch = extractor._torch
        self._max_branches = max_branches
        self._rows: list[int] = []  # the handle of each batch row
        self._alive: set[int] = set()
        self._next_handle = 0
        self._cache = self._mask = self._positions = None

    def room(self, prefix_len: int, suffix_lens: Sequence[int], max_new_tokens: int) -> int:
        """One text at a time: its branches share one padded batch."""
        return 0 if self._alive else self._max_branches

    def _forward(self, ids, mask, positions, cache):
        with self._torch.inference_mode():
            # logits of the last column only: the output layer over every prompt position is
            # a fifth of SmolLM2's prefill work, for rows nobody reads
            out = self._owner.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                    past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float().cpu().numpy(), out.past_key_values

    def _tensor(self, rows) -> object:
        return self._torch.tensor(rows, dtype=self._torch.long, device=self._owner._device)

    def add(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]) -> tuple[list[int], np.ndarray]:
        start, width = len(prefix), max(len(s) for s in suffixes)
        _, cache = self._forward(self._tensor([list(prefix)]), self._tensor([[1] * start]), self._tensor([list(range(start))]), None)
        cache.batch_repeat_interleave(len(suffixes))
        pad = self._owner.eos_id
        ids, mask, positions = [], [], []
        for suffix in suffixes:
            gap = width - len(suffix)
            ids.append([pad] * gap + list(suffix))
            mask.append([1] * start + [0] * gap + [1] * len(suffix))
            positions.append([start] * gap + list(range(start, start + len(suffix))))
        self._mask = self._tensor(mask)
        logits, self._cache = self._forward(self._tensor(ids), self._mask, self._tensor(positions), cache)
        self._positions = self._tensor([start + len(s) for s in suffixes])
        self._rows = list(range(self._next_handle, self._next_handle + len(suffixes)))
        self._next_handle += len(suffixes)
        self._alive = set(self._rows)
        return list(self._rows), logits

    def step(self, branches: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        torch = self._torch
        if list(branches) != self._rows:  # finished branches leave the batch
            keep = self._tensor([self._rows.index(handle) for handle in branches])
            self._cache.batch_select_indices(keep)
            self._mask, self._positions, self._rows = self._mask[keep], self._positions[keep], list(branches)
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        logits, self._cache = self._forward(self._tensor([[t] for t in tokens]), self._mask, self._positions[:, None], self._cache)
        self._positions = self._positions + 1
        return logits

    def drop(self, branch: int) -> None:
        self._alive.discard(branch)
        if not self._alive:  # the text is done: free its cache now
            self._rows, self._cache = [], None
