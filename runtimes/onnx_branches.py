"""The branch pool on ONNX Runtime (:class:`uner.engine.BranchPool`).

The prefix is run once; the suffixes then follow it from the prefix's KV cache. GroupQueryAttention
takes several new tokens after a past only for one row, so on our exports' branch graph
(``model_branches.onnx``: an attention bias, explicit positions and chosen logit positions) every
suffix runs in one call of one row, end to end, each kept to the prefix and itself by a
block-diagonal bias; other graphs run each suffix in a call of its own. Decoding runs
every branch as one row of a batch whose KV cache is right-padded: each row's mask holds ones
on its own entries, zeros on the padding and a one for every new token. GroupQueryAttention
reads only the mask's row sums (it keeps each row's cache contiguous); standard attention graphs
read the mask as is, so both kinds of export attend to exactly the right entries.

Texts join while others are decoding: new rows are right-padded to the batch's width (or the
batch to theirs) and stacked under the running ones. Padding is never cut (which columns are
padding depends on the attention kind), so a batch stops taking texts once it is twice as wide
as one text needs, and starts afresh when it has drained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from uner.onnx_backend import OnnxExtractor

#: rows decoded at once; a text's branches join only when all of them fit beside the running ones
DEFAULT_MAX_BRANCHES = 32


class OnnxBranches:
    """Running branches (of one or several texts) as the rows of one right-padded KV cache."""

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
        """All of a text's branches when they fit beside the running ones and the batch is not
        yet too wide; an idle pool takes as many as it can."""
        if not self._alive:
            return min(len(suffix_lens), self._max_branches)
        too_wide = self._mask.shape[1] > 2 * (prefix_len + max(suffix_lens) + max_new_tokens)
        crowded = len(self._alive) + len(suffix_lens) > self._max_branches
        return 0 if too_wide or crowded else len(suffix_lens)

    def _encode_stem(self, stem: Sequence[int]) -> list:
        """The stem's KV, encoded from nothing (kept in the owner's ``stem_kv``)."""
        count, model = len(stem), self._model
        return model.forward(np.array([stem]), np.ones((1, count)), np.arange(count)[None], model.empty_past())[1]

    def _prefix_kv(self, prefix: Sequence[int], stem: int) -> list:
        """The prefix's KV (one row): its first ``stem`` tokens from the kept stem KV (the
        session never writes into its inputs), the rest encoded after it."""
        model = self._model
        past = model.stem_kv.fetch(prefix[:stem], self._encode_stem) if stem else model.empty_past()
        start = len(prefix)
        _, kv = model.forward(np.array([prefix[stem:]]), np.ones((1, start)), np.arange(stem, start)[None], past)
        return kv

    def add(
        self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], stem: int = 0
    ) -> tuple[list[int], np.ndarray]:
        model, start = self._model, len(prefix)
        prefix_kv = self._prefix_kv(prefix, stem)
        prefix_arrays = [value.numpy() for value in prefix_kv]
        width = start + max(len(s) for s in suffixes)
        kv = [np.zeros((len(suffixes), a.shape[1], width, a.shape[3]), dtype=a.dtype) for a in prefix_arrays]
        if model.io.suffix_batching:
            logits = self._suffixes_together(prefix_kv, start, suffixes, kv)
        else:
            logits = []
            for row, suffix in enumerate(suffixes):
                total = start + len(suffix)
                row_logits, present = model.forward(
                    np.array([suffix]), np.ones((1, total)), np.arange(start, total)[None], prefix_kv
                )
                for layer, value in zip(kv, present):
                    layer[row, :, :total] = value.numpy()[0]
                logits.append(row_logits[0])
        lengths = np.array([start + len(s) for s in suffixes])
        mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int64)
        handles = list(range(self._next_handle, self._next_handle + len(suffixes)))
        self._next_handle += len(suffixes)
        self._join(kv, mask, lengths, handles)
        return handles, np.stack(logits)

    def _suffixes_together(self, prefix_kv: list, start: int, suffixes, kv: list[np.ndarray]) -> list[np.ndarray]:
        """Every suffix in one call of one row, laid end to end after the prefix: a block-diagonal
        bias keeps each suffix to the prefix and itself, and each restarts at position ``start``.
        Fills each row of ``kv`` with the prefix and its own suffix; the logits of each suffix's
        last token."""
        lengths = [len(s) for s in suffixes]
        ends = np.cumsum(lengths)
        count, starts = int(ends[-1]), ends - lengths
        positions = np.concatenate([np.arange(start, start + length) for length in lengths])
        bias = np.full((1, 1, count, start + count), np.finfo(self._model.io.kv_dtype).min, self._model.io.kv_dtype)
        bias[..., :start] = 0
        for first, end in zip(starts, ends):
            block = np.tril(np.ones((end - first, end - first), dtype=bool))
            bias[0, 0, first:end, start + first : start + end][block] = 0
        ids = np.array([[token for suffix in suffixes for token in suffix]])
        logits, present = self._model.forward(
            ids, np.ones((1, start + count)), positions[None], prefix_kv, bias, [int(end) - 1 for end in ends]
        )
        for layer, value in zip(kv, present):
            whole = value.numpy()[0]
            for row, (first, end) in enumerate(zip(starts, ends)):
                layer[row, :, :start] = whole[:, :start]
                layer[row, :, start : start + end - first] = whole[:, start + first : start + end]
        return list(logits)

    def _join(self, kv: list[np.ndarray], mask: np.ndarray, positions: np.ndarray, handles: list[int]) -> None:
        """Stack new rows under the running ones, right-padding the narrower cache."""
        self._alive.update(handles)
        if len(self._alive) > len(handles):
            keep = [row for row, handle in enumerate(self._rows) if handle in self._alive]  # finished ones leave
            width = max(mask.shape[1], self._mask.shape[1])
            kv = [
                np.concatenate([_right_pad(old.numpy()[keep], width), _right_pad(new, width)])
                for old, new in zip(self._past, kv)
            ]
            mask = np.concatenate([_right_pad(self._mask[keep], width), _right_pad(mask, width)])
            positions = np.concatenate([self._positions[keep], positions])
            handles = [self._rows[row] for row in keep] + handles
        self._past = [self._model.kv_value(layer) for layer in kv]
        self._mask, self._positions, self._rows = mask, positions, handles

    def step(self, branches: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        if list(branches) != self._rows:  # finished branches leave the batch
            keep = [self._rows.index(handle) for handle in branches]
            self._past = [self._model.kv_value(value.numpy()[keep]) for value in self._past]
            self._mask, self._positions, self._rows = self._mask[keep], self._positions[keep], list(branches)
        self._mask = np.concatenate([self._mask, np.ones((len(branches), 1), dtype=np.int64)], axis=1)
        logits, self._past = self._model.forward(
            np.array(tokens)[:, None], self._mask, self._positions[:, None], self._past
        )
        self._positions = self._positions + 1
        return logits

    def drop(self, branch: int) -> None:
        self._alive.discard(branch)
        if not self._alive:  # nothing left running: free the cache now
            self._rows, self._past = [], []

    def reset(self) -> None:
        """Forget every row (after a failed or abandoned run) and free the cache."""
        self._alive.clear()
        self._rows, self._past = [], []


def _right_pad(array: np.ndarray, width: int) -> np.ndarray:
    """A mask ``[rows, cols]`` or a cache ``[rows, heads, cols, dim]`` widened to ``width``
    columns with zeros on the right."""
    axis = 1 if array.ndim == 2 else 2
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, width - array.shape[axis])
    return np.pad(array, pad)
