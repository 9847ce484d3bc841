"""The fast path: one prefill per text, every entity type decoded together, texts streamed in.

UniNER's prompts for one text differ only after ``What describes``: the system line, the
passage and ``I've read this text.</s>USER: What describes`` are the same for every type. The
engine finds that shared prefix *in token ids* (so the ids are exactly those of the per-query
prompts), has the backend encode it once and branch one sequence per type from it, and decodes
every running branch as one batch, dropping each as it finishes. When the backend's pool has
room (llama.cpp's shared KV cache), the next texts join while earlier ones are still decoding,
so the long answers of one text do not run alone.

A backend takes part by providing a :class:`BranchPool`; the greedy loop, EOS, token limits,
constraints, the loop guard and scheduling live here, once (the per-query paths of ONNX Runtime
and llama.cpp run :func:`greedy_continuation`, the same loop for one sequence).
"""

from __future__ import annotations

import time
from collections import Counter
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

    def add(
        self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], stem: int = 0
    ) -> tuple[list[Hashable], np.ndarray]:
        """Encode ``prefix`` once and each suffix after it: a handle per new branch, and the
        logits of each suffix's last token ``[len(suffixes), vocab]``. The first ``stem``
        tokens of ``prefix`` start every text's prompt (the system line): a pool may keep
        their KV from one text to the next and encode only the rest."""

    def step(self, branches: Sequence[Hashable], tokens: Sequence[int]) -> np.ndarray:
        """Feed each running branch its next token: logits ``[len(branches), vocab]``."""

    def drop(self, branch: Hashable) -> None:
        """Forget a finished branch."""

    def reset(self) -> None:
        """Forget every branch, whatever state a failed or abandoned run left the pool in."""


@dataclass(frozen=True)
class Decoding:
    """How one job's answers are decoded when not as its run's (a server's requests each bring
    their own): its constraint (:mod:`uner.constraints`) and token limit."""

    constrain: str | None
    max_new_tokens: int


@dataclass
class Job:
    """One text's prompts (one per entity type) and the text, for grounded constraints;
    ``decoding`` ``None``: decoded as the run says."""

    prompts: list[list[int]]
    text: str = ""
    decoding: Decoding | None = None

    def limit(self, default: int) -> int:
        """Its answers' token limit, ``default`` unless its decoding says otherwise."""
        return self.decoding.max_new_tokens if self.decoding is not None else default

    def constraint(self, default: str | None) -> str | None:
        """Its answers' constraint, ``default`` unless its decoding says otherwise."""
        return self.decoding.constrain if self.decoding is not None else default


class JobFeed(Protocol):
    """Jobs that arrive while others decode (a server's requests join the running batch):
    :func:`decode_jobs` asks for the next one without waiting while branches run, and waits
    when none do."""

    def next_job(self, wait: bool) -> Job | None:
        """The next job, or ``None``: none ready yet (``wait`` False) or none ever again
        (``wait`` True)."""


class _IterFeed:
    """A plain iterable of jobs as a :class:`JobFeed` (its ``next`` may block: a corpus reader)."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = iter(jobs)

    def next_job(self, wait: bool) -> Job | None:
        return next(self._jobs, None)


class AnswerGuard(Protocol):
    """Ends an answer early (:class:`uner.loop_guard.AnswerGuard`): a reason, or ``None`` to go on."""

    def feed(self, token: int) -> str | None: ...


GuardFactory = Callable[[], "AnswerGuard | None"]


def _no_guard() -> None:
    return None


@dataclass
class EngineStats:
    """Where a run's time went: seconds encoding prompts (prefixes and suffixes) and in decode
    steps, the rows of each step, and why answers ended.

    ``runaway_steps``: steps in which every row was an answer that went on to hit the token
    limit, i.e. steps spent only on answers the parser will most likely read as ``[]``.
    ``history=False`` keeps the totals only (``rows``, not the rows of each step), so a server's
    stats stay the same size however long it runs; ``runaway_steps`` then counts nothing."""

    prefill_seconds: float = 0.0
    step_seconds: float = 0.0
    steps: int = 0
    rows: int = 0  # answers advanced by the steps, all steps together
    history: bool = True
    tokens_per_step: list[int] = field(default_factory=list)
    stops: Counter = field(default_factory=Counter)
    generated_tokens: int = 0
    _limit_rows: list[int] = field(default_factory=list)  # per step: rows of answers that hit the limit

    def record_answer(self, reason: str, tokens: int, first_step: int | None = None) -> None:
        """An answer ended for ``reason`` after ``tokens`` tokens; a batched one took part in
        the steps from ``first_step`` on (``None``: it ran alone, a one-row step per token
        after the first, which the prompt's logits give)."""
        self.stops[reason] += 1
        self.generated_tokens += tokens
        if first_step is None:
            first_step, own = self.steps, max(tokens - 1, 0)
            self.steps += own
            self.rows += own
            if self.history:
                self.tokens_per_step += [1] * own
        if reason == "limit" and self.history:
            self._limit_rows += [0] * (self.steps - len(self._limit_rows))
            for step in range(first_step, self.steps):
                self._limit_rows[step] += 1

    @property
    def runaway_steps(self) -> int:
        rows = self._limit_rows + [0] * (len(self.tokens_per_step) - len(self._limit_rows))
        return sum(1 for limit, total in zip(rows, self.tokens_per_step) if limit and limit == total)


class StemKV:
    """A backend's KV of the prompt stem (:meth:`BranchPool.add`'s ``stem``), kept across runs
    with the ids it encodes, so a pool reuses it only for the same ids."""

    def __init__(self) -> None:
        self._ids: tuple[int, ...] | None = None
        self._kv: object = None

    @property
    def size(self) -> int:
        """Tokens of the stem kept (0: none)."""
        return len(self._ids) if self._ids is not None else 0

    def get(self, ids: Sequence[int]) -> object:
        """The KV kept for exactly ``ids``, else ``None``."""
        return self._kv if self._ids == tuple(ids) else None

    def put(self, ids: Sequence[int], kv: object) -> None:
        self._ids, self._kv = tuple(ids), kv

    def fetch(self, ids: Sequence[int], encode: Callable[[Sequence[int]], object]) -> object:
        """The KV kept for exactly ``ids``; else ``encode(ids)``, kept from now on."""
        kv = self.get(ids)
        if kv is None:
            kv = encode(ids)
            self.put(ids, kv)
        return kv

    def clear(self) -> None:
        self._ids = self._kv = None


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
    guard: AnswerGuard | None
    first_step: int
    limit: int
    output: list[int] = field(default_factory=list)
    next_token: int | None = None


def _ending(token: int, output: list[int], guard: AnswerGuard | None, eos_id: int, max_new_tokens: int) -> str | None:
    """Record ``token`` in ``output``: why the answer ends with it, or ``None`` to go on."""
    if token == eos_id:
        return "eos"
    output.append(token)
    cut = guard.feed(token) if guard is not None else None
    if cut is not None:
        return cut
    return "limit" if len(output) >= max_new_tokens else None


def greedy_continuation(
    logits: np.ndarray,
    step: Callable[[int], np.ndarray],
    eos_id: int,
    max_new_tokens: int,
    guard: AnswerGuard | None = None,
    stats: EngineStats | None = None,
) -> list[int]:
    """One sequence's greedy answer: ``logits`` are its prompt's last, ``step(token)`` feeds a
    token and returns the next logits. The per-query paths' loop, ended exactly as the engine
    ends a branch (EOS excluded, at most ``max_new_tokens``, the same guard)."""
    output: list[int] = []
    while (reason := _ending(int(np.argmax(logits)), output, guard, eos_id, max_new_tokens)) is None:
        logits = step(output[-1])
    if stats is not None:
        stats.record_answer(reason, len(output))
    return output


class _Admission:
    """A job's branches not yet in the pool (a job that does not fit at once goes in parts)."""

    def __init__(self, index: int, job: Job, stem: Sequence[int], max_new_tokens: int = 0) -> None:
        self.index = index
        self.limit = job.limit(max_new_tokens)
        cut = shared_prefix(job.prompts)
        self.prefix = list(job.prompts[0][:cut])
        self.suffixes = [list(p[cut:]) for p in job.prompts]
        self.admitted = 0
        # the stem's KV is reused only when this prompt really starts with its ids
        starts = 0 < len(stem) < len(self.prefix) and self.prefix[: len(stem)] == list(stem)
        self.stem = len(stem) if starts else 0

    @property
    def rest(self) -> list[list[int]]:
        return self.suffixes[self.admitted :]


def decode_jobs(
    pool: BranchPool,
    jobs: Iterable[Job] | JobFeed,
    make_picker: Callable[[Job, int], TokenPicker],
    eos_id: int,
    max_new_tokens: int,
    stats: EngineStats | None = None,
    make_guard: GuardFactory = _no_guard,
    stem: Sequence[int] = (),
) -> Iterator[tuple[int, list[list[int]]]]:
    """Greedy continuations of every job's prompts, as ``(job index, ids per prompt)`` in the
    order jobs finish (an index counts the jobs taken, from 0). EOS is not included; at most
    ``max_new_tokens`` per prompt (or the job's own limit), and each answer ends where its guard
    (``make_guard()``, one per answer) says (the per-query path's contract). ``stem``: the ids
    every text's prompt starts with, whose KV the pool may keep. ``jobs`` may be a
    :class:`JobFeed`, whose jobs join the running batch as they arrive."""
    stats = stats if stats is not None else EngineStats()
    feed = jobs if hasattr(jobs, "next_job") else _IterFeed(jobs)
    taken, ended = 0, False
    jobs_by_index: dict[int, Job] = {}
    waiting: _Admission | None = None
    running: dict[Hashable, _Branch] = {}
    outputs: dict[int, list[list[int] | None]] = {}

    def settle(handle: Hashable, branch: _Branch, token: int) -> Iterator[tuple[int, list[list[int]]]]:
        """Record ``token`` for ``branch``; finish it on EOS, at the limit or where its guard cuts."""
        reason = _ending(token, branch.output, branch.guard, eos_id, branch.limit)
        if reason is not None:
            stats.record_answer(reason, len(branch.output), branch.first_step)
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
                    if ended:
                        break
                    job = feed.next_job(wait=not running)
                    if job is None:
                        ended = not running  # asked while waiting: the feed has ended
                        break
                    jobs_by_index[taken], outputs[taken] = job, [None] * len(job.prompts)
                    waiting = _Admission(taken, job, stem, max_new_tokens)
                    taken += 1
                rest = waiting.rest
                count = min(len(rest), pool.room(len(waiting.prefix), [len(s) for s in rest], waiting.limit))
                if count == 0 and not running:
                    count = 1  # an empty pool must take at least one branch, or nothing moves
                if count == 0:
                    break
                started = time.perf_counter()
                handles, logits = pool.add(waiting.prefix, rest[:count], waiting.stem)
                stats.prefill_seconds += time.perf_counter() - started
                job = jobs_by_index[waiting.index]
                for offset, (handle, row) in enumerate(zip(handles, logits)):
                    slot = waiting.admitted + offset
                    branch = _Branch(
                        waiting.index, slot, make_picker(job, slot), make_guard(), stats.steps, waiting.limit
                    )
                    running[handle] = branch
                    yield from settle(handle, branch, branch.picker.pick(row))
                waiting.admitted += count
                if not waiting.rest:
                    waiting = None
            if not running:
                if waiting is None and ended:
                    completed = True
                    return
                continue
            handles = list(running)
            started = time.perf_counter()
            logits = pool.step(handles, [running[h].next_token for h in handles])
            stats.step_seconds += time.perf_counter() - started
            stats.steps += 1
            stats.rows += len(handles)
            if stats.history:
                stats.tokens_per_step.append(len(handles))
            for handle, row in zip(handles, logits):
                branch = running[handle]
                yield from settle(handle, branch, branch.picker.pick(row))
    finally:
        if not completed:
            # an input failed mid-batch or the caller stopped early: the backend must not
            # keep these branches (llama.cpp's sequences, stale torch/ORT rows) for the next run
            pool.reset()
