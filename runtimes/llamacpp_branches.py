"""The branch pool on llama.cpp (:class:`uner.engine.BranchPool`).

Branches are sequences of one context whose unified KV cache every sequence may use: the prefix
is decoded once into a holder sequence, copied to each branch (``llama_memory_seq_cp``, which
shares the cells), and every branch's suffix then runs in one ``llama_batch``. The prompt stem
every text starts with stays in a sequence of its own (:attr:`LlamaCppExtractor.stem_seq`)
from one text and one run to the next; each text's holder starts as a copy of it. Each branch
reserves its worst case (suffix + ``max_new_tokens`` cells), so a running branch can never find
the cache full; the pool takes another text only when ``parallel_texts`` allows.

A pool lives for one run of the engine and owns the context's KV cache while it does: it
starts from a cache holding at most the stem, and :meth:`reset` empties it whatever state a
failed or abandoned run left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from uner.llamacpp_backend import LlamaCppExtractor


class LlamaCppBranches:
    """Running branches as sequences of the extractor's context (sequence 0 is the per-query path's)."""

    def __init__(self, extractor: LlamaCppExtractor) -> None:
        self._owner = extractor
        self._free_seqs = _branch_seqs(extractor)
        self._position: dict[int, int] = {}  # next position of each running branch
        self._reserved: dict[int, int] = {}  # cells each running branch may still use
        self._group_of: dict[int, int] = {}  # branch -> the prefix (group) it continues
        self._group_cells: dict[int, int] = {}  # prefix cells of each group with live branches
        self._next_group = 0
        extractor.keep_only_stem()

    def room(self, prefix_len: int, suffix_lens: Sequence[int], max_new_tokens: int) -> int:
        """Branches that fit now: each reserves its suffix and ``max_new_tokens`` cells (its
        worst case, so a running branch can never find the cache full), the prefix once."""
        if len(self._group_cells) >= self._owner.parallel_texts:
            return 0
        used = sum(self._group_cells.values()) + sum(self._reserved.values()) + self._owner.stem_cells
        free = self._owner.cells - used - prefix_len
        seqs = len(self._free_seqs) - 1  # one id holds the prefix while it is copied
        fits = 0
        for length in suffix_lens[: max(0, seqs)]:
            free -= length + max_new_tokens
            if free < 0:
                break
            fits += 1
        return fits

    def add(
        self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], stem: int = 0
    ) -> tuple[list[int], np.ndarray]:
        owner = self._owner
        holder = self._free_seqs.pop()
        count = len(prefix)
        start = owner.start_from_stem(prefix[:stem], holder) if stem else 0
        owner.decode_tokens(prefix[start:], range(start, count), [holder] * (count - start), [False] * (count - start))
        branches = [self._free_seqs.pop() for _ in suffixes]
        tokens, positions, seqs, wants = [], [], [], []
        for seq, suffix in zip(branches, suffixes):
            owner.copy_sequence(holder, seq)
            tokens += suffix
            positions += range(count, count + len(suffix))
            seqs += [seq] * len(suffix)
            wants += [False] * (len(suffix) - 1) + [True]
            self._position[seq] = count + len(suffix)
            self._reserved[seq] = len(suffix) + owner.max_new_tokens
        owner.remove_sequence(holder)  # the branches keep the cells
        self._free_seqs.append(holder)
        group = self._next_group
        self._next_group += 1
        self._group_cells[group] = count
        self._group_of.update({seq: group for seq in branches})
        return branches, owner.decode_tokens(tokens, positions, seqs, wants)

    def step(self, branches: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        positions = [self._position[seq] for seq in branches]
        for seq in branches:
            self._position[seq] += 1
        return self._owner.decode_tokens(tokens, positions, branches, [True] * len(tokens))

    def drop(self, branch: int) -> None:
        self._owner.remove_sequence(branch)
        del self._position[branch], self._reserved[branch]
        group = self._group_of.pop(branch)
        if group not in self._group_of.values():
            del self._group_cells[group]  # its last branch is gone: so are the prefix cells
        self._free_seqs.append(branch)
        if not self._position:
            # an empty cache restarts at cell 0: llama.cpp attends over every cell up to the
            # highest one in use, so letting new sequences drift up the cache costs time
            self._owner.keep_only_stem()

    def reset(self) -> None:
        """Forget every branch and empty the KV cache (after a failed or abandoned run)."""
        self._free_seqs = _branch_seqs(self._owner)
        self._position.clear()
        self._reserved.clear()
        self._group_of.clear()
        self._group_cells.clear()
        if self._owner.is_open:
            self._owner.clear_memory()


def _branch_seqs(extractor: LlamaCppExtractor) -> list[int]:
    """Sequence ids free for holders and branches: all but the per-query one (0) and the stem's."""
    return [seq for seq in range(extractor.n_seq_max - 1, 0, -1) if seq != extractor.stem_seq]
