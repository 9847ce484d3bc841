"""The fast path: one prefill per text, every entity type decoded together, texts streamed in.

UniNER's prompts for one text differ only after ``What describes``: the system line, the
passage and ``I've read this text.</s>USER: What describes`` are the same for every type. The
engine finds that shared prefix *in token ids* (so the ids are exactly those of the per-query
prompts), has the backend encode it once and branch one sequence per type from it, and decodes
every running branch as one batch, dropping each as it finishes. When the backend's pool has
room (llama.cpp's shared KV cache), the next texts join while earlier ones are still decoding,
so the long answers of one text do not run alone.

A backend takes part by providing a :class:`BranchPool`; the greedy loop, EOS, token limits,
constraints and scheduling live here, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class TokenPicker(Protocol):
    """Chooses a sequence's next token from its logits (greedy, or greedy under a constraint)."""

    def pick(self, logits: np.ndarray) -> int: ...


class Greedy:
    """Unconstrained greedy decoding: the parity mode."""

    def pick(self, logits: np.ndarray) -> int:
        return int(np.argmax(logits))


class BranchPool(Protocol):
    """A backend's batch of sequences, each continuing a prompt prefix it shares with others."""

    def room(self, prefix_len: int, suffix_lens: Sequence[int], max_new_tokens: int) -> int:
        """How many of these branches (in order) can be added now; 0 to wait for running ones."""

    def add(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]) -> tuple[list[Hashable], np.ndarray]:
        """Encode ``prefix`` once and each suffix after it: a handle per new branch, and the
        logits of each suffix's last token ``[len(suffixes), vocab]``."""

    def step(self, branches: Sequence[Hashable], tokens: Sequence[int]) -> np.ndarray:
        """Feed each running branch its next token: logits ``[len(branches), vocab]``."""

    def drop(self, branch: Hashable) -> None:
        """Forget a finished branch."""

    def reset(self) -> None:
        """Forget every branch, whatever state a failed or abandoned run left the pool in."""


@dataclass
class Job:
    """One text's prompts (one per entity type) and the text, for grounded constraints."""

    prompts: list[list[int]]
    text: str = ""


@dataclass
class EngineStats:
    """Seconds spent encoding prompts (prefixes and suffixes) and in decode steps."""

    prefill_seconds: float = 0.0
    step_seconds: float = 0.0
    steps: int = 0
    tokens_per_step: list[int] = field(default_factory=list)


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``prompts``, leaving each at least one own token
    (the last prompt token must be run per sequence to get its logits)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length


@dataclass
class _Branch:
    job: int
    slot: int
    picker: TokenPicker
    output: list[int] = field(default_factory=list)
    next_token: int | None = None


class _Admission:
    """A job's branches not yet in the pool (a job that does not fit at once goes in parts)."""

    def __init__(self, index: int, job: Job) -> None:
        self.index = index
        cut = shared_prefix(job.prompts)
        self.prefix = list(job.prompts[0][:cut])
        self.suffixes = [list(p[cut:]) for p in job.prompts]
        self.admitted = 0

    @property
    def rest(self) -> list[list[int]]:
        return self.suffixes[self.admitted :]


def decode_jobs(
    pool: BranchPool,
    jobs: Iterable[Job],
    make_picker: Callable[[Job, int], TokenPicker],
    eos_id: int,
    max_new_tokens: int,
    stats: EngineStats | None = None,
) -> Iterator[tuple[int, list[list[int]]]]:
    """Greedy continuations of every job's prompts, as ``(job index, ids per prompt)`` in the
    order jobs finish. EOS is not included; at most ``max_new_tokens`` per prompt (the
    per-query path's contract)."""
    stats = stats or EngineStats()
    incoming = iter(enumerate(jobs))
    jobs_by_index: dict[int, Job] = {}
    waiting: _Admission | None = None
    running: dict[Hashable, _Branch] = {}
    outputs: dict[int, list[list[int] | None]] = {}

    def settle(handle: Hashable, branch: _Branch, token: int) -> Iterator[tuple[int, list[list[int]]]]:
        """Record ``token`` for ``branch``; finish it on EOS or at the limit."""
        if token != eos_id:
            branch.output.append(token)
        if token == eos_id or len(branch.output) >= max_new_tokens:
            del running[handle]
            pool.drop(handle)
            outputs[branch.job][branch.slot] = branch.output
            if all(out is not None for out in outputs[branch.job]):
                del jobs_by_index[branch.job]
                yield branch.job, outputs.pop(branch.job)
        else:
            branch.next_token = token

    completed = False
    try:
        while True:
            # admit new branches while the pool has room
            while True:
                if waiting is None:
                    item = next(incoming, None)
                    if item is None:
                        break
                    jobs_by_index[item[0]] = item[1]
                    outputs[item[0]] = [None] * len(item[1].prompts)
                    waiting = _Admission(*item)
                rest = waiting.rest
                count = min(len(rest), pool.room(len(waiting.prefix), [len(s) for s in rest], max_new_tokens))
                if count == 0 and not running:
                    count = 1  # an empty pool must take at least one branch, or nothing moves
                if count == 0:
                    break
                started = time.perf_counter()
                handles, logits = pool.add(waiting.prefix, rest[:count])
                stats.prefill_seconds += time.perf_counter() - started
                job = jobs_by_index[waiting.index]
                for offset, (handle, row) in enumerate(zip(handles, logits)):
                    branch = _Branch(
                        waiting.index, waiting.admitted + offset, make_picker(job, waiting.admitted + offset)
                    )
                    running[handle] = branch
                    yield from settle(handle, branch, branch.picker.pick(row))
                waiting.admitted += count
                if not waiting.rest:
                    waiting = None
            if not running:
                if waiting is None:
                    completed = True
                    return
                continue
            handles = list(running)
            started = time.perf_counter()
            logits = pool.step(handles, [running[h].next_token for h in handles])
            stats.step_seconds += time.perf_counter() - started
            stats.steps += 1
            stats.tokens_per_step.append(len(handles))
            for handle, row in zip(handles, logits):
                branch = running[handle]
                yield from settle(handle, branch, branch.picker.pick(row))
    finally:
        if not completed:
            # an input failed mid-batch or the caller stopped early: the backend must not
            # keep these branches (llama.cpp's sequences, stale torch/ORT rows) for the next run
            pool.reset()
