"""The branch pool on ONNX Runtime (:class:`runtimes.engine.BranchPool`), one text at a time.

The prefix is run once; each suffix then runs on its own from the prefix's KV cache
(GroupQueryAttention takes several new tokens after a past only for one row). Decoding runs
every branch as one row of a batch whose KV cache is right-padded: each row's mask holds ones
on its own entries, zeros on the padding and a one for every new token. GroupQueryAttention
reads only the mask's row sums (it keeps each row's cache contiguous); standard attention graphs
read the mask as is, so both kinds of export attend to exactly the right entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from runtimes.onnx_backend import OnnxExtractor

#: branches decoded in one batch; more rows cost more KV-cache copies per step than they save
DEFAULT_MAX_BRANCHES = 16


class OnnxBranches:
    """The branches of one text and their padded KV cache."""

    def __init__(self, extractor: OnnxExtractor, max_branches: int = DEFAULT_MAX_BRANCHES) -> None:
        self._model = extractor
        self._max_branches = max_branches
        self._rows: list[int] = []  # the handle of each batch row
        self._alive: set[int] = set()
        self._next_handle = 0
        self._past: list = []
        self._mask = np.zeros((0, 0), dtype=np.int64)
        self._positions = np.zeros(0, dtype=np.int64)

    def room(self, prefix_len: int, suffix_lens: Sequence[int], max_new_tokens: int) -> int:
        """One text at a time: its branches share one padded batch."""
        return 0 if self._alive else self._max_branches

    def add(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]) -> tuple[list[int], np.ndarray]:
        model, start = self._model, len(prefix)
        _, prefix_kv = model.forward(np.array([prefix]), np.ones((1, start)), np.arange(start)[None], model._empty_past())
        prefix_arrays = [value.numpy() for value in prefix_kv]
        width = start + max(len(s) for s in suffixes)
        kv = [np.zeros((len(suffixes), a.shape[1], width, a.shape[3]), dtype=a.dtype) for a in prefix_arrays]
        logits = []
        for row, suffix in enumerate(suffixes):
            total = start + len(suffix)
            row_logits, present = model.forward(np.array([suffix]), np.ones((1, total)), np.arange(start, total)[None], prefix_kv)
            for layer, value in zip(kv, present):
                layer[row, :, :total] = value.numpy()[0]
            logits.append(row_logits[0])
        lengths = np.array([start + len(s) for s in suffixes])
        self._mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int64)
        self._positions = lengths
        self._past = [model.kv_value(layer) for layer in kv]
        self._rows = list(range(self._next_handle, self._next_handle + len(suffixes)))
        self._next_handle += len(suffixes)
        self._alive = set(self._rows)
        return list(self._rows), np.stack(logits)

    def step(self, branches: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        if list(branches) != self._rows:  # finished branches leave the batch
            keep = [self._rows.index(handle) for handle in branches]
            self._past = [self._model.kv_value(value.numpy()[keep]) for value in self._past]
            self._mask, self._positions, self._rows = self._mask[keep], self._positions[keep], list(branches)
        self._mask = np.concatenate([self._mask, np.ones((len(branches), 1), dtype=np.int64)], axis=1)
        logits, self._past = self._model.forward(np.array(tokens)[:, None], self._mask, self._positions[:, None], self._past)
        self._positions = self._positions + 1
        return logits

    def drop(self, branch: int) -> None:
        self._alive.discard(branch)
        if not self._alive:  # the text is done: free its cache now
            self._rows, self._past = [], []
