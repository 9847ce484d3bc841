"""The one extraction interface, and the query loop every backend shares.

A backend only supplies tokenization and greedy generation; the prompt, the parser and the
grounding live in :mod:`uner.prompt`, :mod:`uner.parsing` and :mod:`uner.grounding`
and are applied here (answers assembled by :mod:`uner.extraction`), identically for all
backends, as is the loop guard (:mod:`uner.loop_guard`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from uner.checks import check_labels, check_text
from uner.constraints import check_constraint, make_picker_factory
from uner.engine import EngineStats, Job, JobFeed, StemKV, decode_jobs
from uner.entity import Entity
from uner.errors import ExtractorBusy, ExtractorClosed, InputError
from uner.extraction import Extraction, WindowBar
from uner.loop_guard import AnswerGuard, stop_reason
from uner.parsing import close_cut_list
from uner.prompt import encode_prompt, encode_stem
from uner.streaming import OnError, TaskJobs, TaskSource, TextTask
from uner.token_table import TokenTable
from uner.windows import DEFAULT_WINDOW, split_windows

DEFAULT_MAX_NEW_TOKENS = 256
_SLACK = 8  # windows are sized by summing per-sentence token counts, which can be off by a few


@runtime_checkable
class Extractor(Protocol):
    """What :func:`runtimes.load` returns, whatever the backend."""

    name: str

    def extract(self, text: str, labels: Sequence[str]) -> list[Entity]: ...

    def extract_batch(self, texts: Sequence[str], labels: Sequence[str]) -> list[list[Entity]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Extractor: ...

    def __exit__(self, *exc: object) -> None: ...


class GenerativeExtractor(ABC):
    """Shared implementation of :class:`Extractor` for UniNER-style generative models.

    Subclasses provide ``name``, ``eos_id``, ``bos_id`` (``None`` when the tokenizer adds no
    BOS), ``context_length`` and the four methods below; a backend that can branch sequences
    from a shared prompt prefix also provides ``branch_pool()`` (a
    :class:`uner.engine.BranchPool`), which :meth:`generate_jobs` then uses, and
    ``token_bytes``/``vocab_size`` for constrained decoding.

    Threads: one extractor may be called from several threads; its calls take turns (a lock
    held while a call, or a ``run_many`` iteration, runs), so share one model instead of
    loading it per thread, or load one per thread for parallel work. A ``run_many`` left
    unfinished holds the lock until it is closed or collected; calling the extractor again from
    that thread meanwhile raises :class:`~uner.errors.ExtractorBusy`.

    Args:
        max_new_tokens: generation limit per answer.
        batched: one prefill per text and all entity types decoded together (when the
            backend supports it); ``False`` runs one prompt per type, as UniNER's own code.
        constrain: ``None`` (plain greedy, the parity mode), ``"json"`` (answers can only be
            JSON lists of strings) or ``"grounded"`` (... of strings found in the text).
        window: prompt + answer tokens per window; longer texts are read in overlapping
            windows (default 1024, what UniNER was trained with; capped at the context).
        progress: show a progress bar (stderr) over the windows of texts long enough to need
            several, so a long document is not minutes of silence.
        loop_guard: end an answer once what it could still generate cannot change what the
            official parser reads (:mod:`uner.loop_guard`): after its list closes, or once it
            repeats itself in a cycle that would run to the token limit. ``False`` generates
            every token, for exact token parity with UniNER's own code. Batched and per-query
            paths use the same guard, so they stay token-identical either way.
        close_loops: read an answer cut short inside its list (by the guard or the limit) up
            to its last complete mention, instead of as ``[]`` like the official parser: more
            mentions, a different F1, so off by default.
        reuse_stem: keep the KV of the prompt start every text shares (the system line and
            ``USER: Text:``) from one text to the next, on backends whose pools can; ``False``
            encodes it again with each text.
    """

    name: str
    eos_id: int
    bos_id: int | None
    context_length: int
    #: seconds the last :meth:`generate` spent on the prompt (up to the first new token's
    #: logits); the bench splits prompt and generation throughput with it.
    last_prefill_seconds: float | None = None

    def __init__(
        self,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batched: bool = True,
        constrain: str | None = None,
        window: int = DEFAULT_WINDOW,
        progress: bool = False,
        loop_guard: bool = True,
        close_loops: bool = False,
        reuse_stem: bool = True,
    ) -> None:
        if max_new_tokens < 1:
            raise InputError(f"expected max_new_tokens >= 1, got {max_new_tokens}")
        if window <= max_new_tokens:
            raise InputError(f"expected a window larger than max_new_tokens ({max_new_tokens}), got {window}")
        self.max_new_tokens = max_new_tokens
        self.batched = batched
        self.constrain = check_constraint(constrain)
        self.window = window
        self.progress = progress
        self.loop_guard = loop_guard
        self.close_loops = close_loops
        self.reuse_stem = reuse_stem
        self._token_table: TokenTable | None = None
        self.stats = EngineStats()
        self.stem_kv = StemKV()  # the branch pools' KV of prompt_stem(), kept across runs
        self._lock = threading.Lock()
        self._holder: int | None = None  # thread id holding the lock
        self._closed = False

    @property
    def is_open(self) -> bool:
        """False once :meth:`close` has run."""
        return not self._closed

    def _check_open(self) -> None:
        if not self.is_open:
            raise ExtractorClosed(
                f"expected an open {self.name} extractor, got one already closed: load the model again"
            )

    def _acquire(self) -> None:
        """Take the extractor's turn (blocking for other threads' calls)."""
        self._check_open()
        if not self._lock.acquire(blocking=False):
            if self._holder == threading.get_ident():
                raise ExtractorBusy(
                    f"expected the earlier run_many on this {self.name} extractor to be finished or closed before "
                    "another call, "
                    "got it still open in this thread"
                )
            self._lock.acquire()
        self._holder = threading.get_ident()
        if not self.is_open:  # closed while this call waited
            self._release_turn()
            self._check_open()

    def _release_turn(self) -> None:
        self._holder = None
        self._lock.release()

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of plain text, without special tokens."""

    @abstractmethod
    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        """Greedy continuation of ``prompt_ids``: at most ``max_new_tokens``, EOS not included,
        ended where :meth:`new_guard`'s guard cuts."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids."""

    def _release(self) -> None:  # noqa: B027 - an optional hook: a backend holding nothing to free keeps it
        """Free the backend's resources (model, context)."""

    def prompt_ids(self, text: str, label: str) -> list[int]:
        """The UniNER prompt for one (text, label) query, as token ids."""
        ids = encode_prompt(text, label, self.encode, self.eos_id, self.bos_id)
        if len(ids) + self.max_new_tokens > self.context_length:
            raise InputError(
                f"expected a prompt of at most {self.context_length - self.max_new_tokens} tokens "
                f"(context {self.context_length} minus {self.max_new_tokens} new tokens), "
                f"got {len(ids)}: shorten the text"
            )
        return ids

    def answer(self, text: str, label: str) -> str:
        """The model's raw answer to "What describes ``label`` in the text?", on its own."""
        self._acquire()
        try:
            return self.answer_text(self.generate(self.prompt_ids(check_text(text), label)))
        finally:
            self._release_turn()

    def new_guard(self) -> AnswerGuard | None:
        """A loop guard for one answer, or ``None`` when ``loop_guard`` is off."""
        return AnswerGuard(self._table()) if self.loop_guard else None

    def stop_reason(self, ids: Sequence[int], max_new_tokens: int | None = None) -> str:
        """Why a generated answer ended: ``eos``, ``limit``, ``settled`` or ``loop``
        (``max_new_tokens``: the limit it ran under, when not the extractor's)."""
        limit = max_new_tokens or self.max_new_tokens
        return stop_reason(ids, limit, self._table() if self.loop_guard else None)

    def answer_text(self, ids: Sequence[int], max_new_tokens: int | None = None) -> str:
        """The raw answer of generated ids (closed when ``close_loops`` asks and it was cut)."""
        raw = self.decode(ids).strip()
        if self.close_loops and self.stop_reason(ids, max_new_tokens) in ("loop", "limit"):
            return close_cut_list(raw)
        return raw

    def token_bytes(self, token: int) -> bytes:
        """The bytes ``token`` adds to generated text (constrained decoding needs it)."""
        raise NotImplementedError(f"the {self.name} backend cannot constrain its output")

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError(f"the {self.name} backend cannot constrain its output")

    def _table(self) -> TokenTable:
        if self._token_table is None:
            self._token_table = TokenTable(self.token_bytes, self.vocab_size)
        return self._token_table

    def prompt_stem(self) -> list[int]:
        """The ids every prompt starts with, whose KV branch pools keep (empty: ``reuse_stem`` off)."""
        return encode_stem(self.encode, self.bos_id) if self.reuse_stem else []

    def generate_jobs(
        self, jobs: Iterable[Job] | JobFeed, stats: EngineStats | None = None
    ) -> Iterator[tuple[int, list[list[int]]]]:
        """Greedy continuations of every job's prompts (one job per text or window), as
        ``(job index, ids per prompt)`` in the order jobs finish. Batched through the backend's
        branch pool (several texts at once when it has room; a :class:`~uner.engine.JobFeed`'s
        jobs join while others decode), or prompt by prompt when ``batched`` is off;
        constrained decoding always goes through the pool (one branch at a time when not
        batched). ``self.stats`` (``stats`` when given) accumulates prefill and decode time,
        steps and why answers ended."""
        pool = getattr(self, "branch_pool", None)
        self.stats = stats = stats if stats is not None else EngineStats()
        picker = make_picker_factory(self.constrain, self._table, self.eos_id)
        guards, limit, stem = self.new_guard, self.max_new_tokens, self.prompt_stem()
        if self.batched and pool is not None:
            yield from decode_jobs(pool(), jobs, picker, self.eos_id, limit, stats, guards, stem)
            return
        if hasattr(jobs, "next_job"):
            feed = jobs
            jobs = iter(lambda: feed.next_job(wait=True), None)
        for index, job in enumerate(jobs):
            if job.constraint(self.constrain) is None and job.limit(limit) == limit:  # UniNER's own per-query path
                yield index, [self._generate_alone(prompt, stats) for prompt in job.prompts]
                continue
            if pool is None:
                raise InputError(f"the {self.name} backend cannot constrain its output or vary its limit")
            singles = (Job([prompt], job.text, job.decoding) for prompt in job.prompts)
            done = dict(decode_jobs(pool(), singles, picker, self.eos_id, limit, stats, guards, stem))
            yield index, [done[i][0] for i in range(len(job.prompts))]

    def _generate_alone(self, prompt: Sequence[int], stats: EngineStats) -> list[int]:
        """The per-query path for one prompt, its time and ending added to ``stats``."""
        started = time.perf_counter()
        ids = self.generate(prompt)
        prefill = self.last_prefill_seconds or 0.0
        stats.prefill_seconds += prefill
        stats.step_seconds += max(time.perf_counter() - started - prefill, 0.0)
        stats.record_answer(self.stop_reason(ids), len(ids))
        return ids

    def generate_together(self, prompts: Sequence[Sequence[int]], text: str = "") -> list[list[int]]:
        """Greedy continuations of one text's prompts (one per type)."""
        return next(self.generate_jobs([Job([list(p) for p in prompts], text)]))[1]

    def answers(self, text: str, labels: Sequence[str]) -> dict[str, str]:
        """The raw answer for every label, in one pass over the text (which must fit the context)."""
        self._acquire()
        try:
            outputs = self.generate_together([self.prompt_ids(check_text(text), label) for label in labels], text)
            return {label: self.answer_text(ids) for label, ids in zip(labels, outputs)}
        finally:
            self._release_turn()

    def windows(self, text: str, labels: Sequence[str]) -> list[tuple[int, str]]:
        """``(offset, piece)`` windows of ``text`` whose prompts for every label fit the window."""
        labels = check_labels(labels)  # a bad label is named as such, not as a place in a prompt
        overhead = max(len(self.prompt_ids("", label)) for label in labels)
        budget = min(self.window, self.context_length) - self.max_new_tokens - overhead - _SLACK
        if budget < 16:
            raise InputError(
                f"expected a window leaving room for the text, got {self.window} tokens for prompts of {overhead} and "
                f"answers of {self.max_new_tokens}"
            )
        return split_windows(text, lambda piece: len(self.encode(piece)), budget, overlap=budget // 8)

    def stream(
        self,
        tasks: Iterable[TextTask] | TaskSource,
        on_error: OnError | None = None,
        stats: EngineStats | None = None,
    ) -> Iterator[tuple[TextTask, Extraction]]:
        """Each task's extraction as soon as its text is done (completion order), the texts
        decoded together; a :class:`~uner.streaming.TaskSource` (a server's queue) adds texts to
        the running batch as they arrive. Holds the extractor's turn until it ends or is closed.
        ``on_error``: report a task whose text cannot be read there and go on, instead of raising;
        ``stats``: where the engine's counters go (:meth:`generate_jobs`)."""
        bar = WindowBar(self.progress)
        feed = TaskJobs(self, tasks, bar, on_error)
        self._acquire()
        generated = self.generate_jobs(feed, stats)
        try:
            for job_index, outputs in generated:
                if (done := feed.finish(job_index, outputs)) is not None:
                    yield done
        finally:
            # an input that failed, or a caller that stopped early: the engine releases every
            # branch it still holds before the next call may use the backend
            generated.close()
            bar.close()
            self._release_turn()

    def run_many(self, texts: Iterable[str], labels: Sequence[str]) -> Iterator[Extraction]:
        """:meth:`run` over a stream of texts, decoded together; results in input order."""
        labels = check_labels(labels)
        tasks = (TextTask(index, text, labels) for index, text in enumerate(texts))
        finished: dict[Hashable, Extraction] = {}
        emitted = 0
        with contextlib.closing(self.stream(tasks)) as results:
            for task, extraction in results:
                finished[task.key] = extraction
                while emitted in finished:
                    yield finished.pop(emitted)
                    emitted += 1

    def run(self, text: str, labels: Sequence[str]) -> Extraction:
        """Entities, raw answers and ungrounded answers for one text of any length."""
        with contextlib.closing(self.run_many([check_text(text)], labels)) as results:
            return next(results)

    def extract(self, text: str, labels: Sequence[str]) -> list[Entity]:
        """Entities of ``labels`` in ``text``, sorted by offset.

        >>> ner.extract("Barack Obama visited Paris.", ["person", "location"])  # doctest: +SKIP
        [Entity(label='person', text='Barack Obama', start=0, end=12), ...]
        """
        return self.run(text, labels).entities

    def extract_batch(self, texts: Sequence[str], labels: Sequence[str]) -> list[list[Entity]]:
        """:meth:`extract` over several texts with the same labels, decoded together."""
        return [extraction.entities for extraction in self.run_many(texts, labels)]

    def close(self) -> None:
        """Free the model; any later call raises :class:`~uner.errors.ExtractorClosed`.

        Waits for a call running in another thread; a ``run_many`` left open in this thread
        fails on its next step instead of reading freed memory."""
        if self._closed:
            return
        if self._holder == threading.get_ident():
            self._closed = True
            self.stem_kv.clear()
            self._release()
            return
        with self._lock:
            self._closed = True
            self.stem_kv.clear()
            self._release()

    def __enter__(self) -> GenerativeExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
