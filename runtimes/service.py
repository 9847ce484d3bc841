"""One model, many clients: the request batching behind ``uner serve`` (no web framework here).

A worker thread runs the extractor's :meth:`~uner.base.GenerativeExtractor.stream` over a
bounded queue of texts. Every request's texts go into that queue and join the engine's running
batch as the pool has room, whichever request they came from; a request's future resolves as
soon as its own texts are done. A request given up (timed out) loses the texts not yet started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from uner.base import GenerativeExtractor
from uner.checks import check_labels, check_text
from uner.constraints import check_constraint
from uner.engine import Decoding, EngineStats
from uner.errors import InputError, UnerError, first_line
from uner.extraction import Extraction
from uner.streaming import TextTask

logger = logging.getLogger(__name__)


class RequestError(InputError):
    """A request's field is unusable (HTTP 422, naming ``field``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class LimitExceeded(RequestError):
    """A request asks for more than the server's limits allow (HTTP 413)."""


class ServiceBusy(UnerError):
    """The queue is full, or the service is loading or stopping (HTTP 503)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much may wait."""

    max_texts: int = 64
    max_labels: int = 32
    max_chars: int = 100_000  # characters of all the request's texts together
    max_label_chars: int = 200
    queue_size: int = 256  # texts waiting for the engine, all requests together
    timeout_s: float = 300.0


@dataclass
class ServiceCounters:
    """What ``/metrics`` reports of the work itself (HTTP counts live with the server)."""

    texts: int = 0
    queries: int = 0  # texts x labels answered


@dataclass(eq=False)
class Submission:
    """A queued request of ``pending`` texts: ``future`` resolves to their extractions, in order."""

    pending: int
    future: Future = field(default_factory=Future)
    results: list[Extraction | None] = field(init=False)
    given_up: bool = False

    def __post_init__(self) -> None:
        self.results = [None] * self.pending

    def text_done(self, index: int, extraction: Extraction) -> None:
        self.results[index] = extraction
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(list(self.results))

    def fail(self, exc: BaseException) -> None:
        self.given_up = True
        if not self.future.done():
            self.future.set_exception(exc)

    def give_up(self) -> None:
        """Drop the texts not started yet (the client has gone or timed out)."""
        self.given_up = True
        self.future.cancel()


def _checked(field: str, check, value):
    """``check(value)``, its :class:`~uner.errors.InputError` naming the request's ``field``."""
    try:
        return check(value)
    except InputError as exc:
        raise RequestError(field, str(exc)) from None


def _constraint(name: str) -> str | None:
    return check_constraint(None if name == "none" else name)


class _TaskQueue:
    """The texts waiting for the engine: a :class:`~uner.streaming.TaskSource`, thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._tasks: deque[TextTask] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._in_flight: dict[int, Submission] = {}  # requests with texts taken by the engine

    def __len__(self) -> int:
        return len(self._tasks)

    def put_all(self, tasks: list[TextTask]) -> None:
        with self._ready:
            if self._closed:
                raise ServiceBusy("expected a running server, got one shutting down")
            if len(self._tasks) + len(tasks) > self._size:
                raise ServiceBusy(f"expected room in the queue, got {len(self._tasks)} of {self._size} texts waiting")
            self._tasks.extend(tasks)
            self._ready.notify()

    def next_task(self, wait: bool) -> TextTask | None:
        with self._ready:
            while True:
                while self._tasks:
                    task = self._tasks.popleft()
                    request = task.key[0]
                    if not request.given_up:
                        self._in_flight[id(request)] = request
                        return task
                if not wait or self._closed:
                    return None
                self._ready.wait()

    def settled(self, request: Submission) -> None:
        """``request`` has no text in the engine any more."""
        with self._ready:
            self._in_flight.pop(id(request), None)

    def take_in_flight(self) -> list[Submission]:
        """Every request with texts in the engine, forgotten here (the engine failed)."""
        with self._ready:
            requests = list(self._in_flight.values())
            self._in_flight.clear()
            return requests

    def close(self) -> None:
        """No more tasks; those queued are still handed out."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class ExtractionService:
    """Serves one extractor to many threads: :meth:`submit` returns a future of the request's
    extractions (in the order of its texts), resolved as soon as its texts are done.

    Args:
        extractor: a batched extractor (:func:`uner.load`); the service owns it from now on.
        limits: per-request limits and the queue's size.
    """

    def __init__(self, extractor: GenerativeExtractor, limits: Limits = Limits()) -> None:
        if not extractor.batched:
            raise InputError("expected a batched extractor: the service decodes every client's texts together")
        self.extractor = extractor
        self.limits = limits
        self.counters = ServiceCounters()
        # totals only, kept across stream restarts: a server's counters do not grow with its age
        self.engine_stats = EngineStats(history=False)
        self._queue = _TaskQueue(limits.queue_size)
        self._worker = threading.Thread(target=self._serve, name="uner-engine", daemon=True)
        self._worker.start()

    @property
    def queue_depth(self) -> int:
        """Texts waiting for the engine."""
        return len(self._queue)

    def engine_totals(self) -> dict[str, float]:
        """Where the engine's time went since the start: prefill and decode seconds, decode
        steps, the rows those steps carried, generated tokens (the bound on batching shows here)."""
        stats = self.engine_stats
        return {
            "prefill_seconds": stats.prefill_seconds,
            "decode_seconds": stats.step_seconds,
            "decode_steps": stats.steps,
            "decode_rows": stats.rows,
            "generated_tokens": stats.generated_tokens,
        }

    def check(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        constrain: str | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[list[str], list[str], Decoding]:
        """A request's texts, labels and decoding, checked against the limits (413) and for
        sense (:class:`~uner.errors.InputError`, 422)."""
        limits, ner = self.limits, self.extractor
        if not texts:
            raise RequestError("texts", "expected at least one text, got none")
        if len(texts) > limits.max_texts:
            raise LimitExceeded("texts", f"expected at most {limits.max_texts} texts per request, got {len(texts)}")
        labels = _checked("labels", check_labels, labels)
        texts = [_checked("texts", check_text, text) for text in texts]
        kind = ner.constrain if constrain is None else _checked("constrain", _constraint, constrain)
        if len(labels) > limits.max_labels:
            raise LimitExceeded("labels", f"expected at most {limits.max_labels} labels per request, got {len(labels)}")
        if longest := max((label for label in labels if len(label) > limits.max_label_chars), key=len, default=None):
            raise LimitExceeded(
                "labels", f"expected labels of at most {limits.max_label_chars} characters, got one of {len(longest)}"
            )
        if (chars := sum(len(text) for text in texts)) > limits.max_chars:
            raise LimitExceeded(
                "texts", f"expected at most {limits.max_chars} characters of text per request, got {chars}"
            )
        limit = ner.max_new_tokens if max_new_tokens is None else max_new_tokens
        if not 1 <= limit <= ner.max_new_tokens:
            raise RequestError(
                "max_new_tokens",
                f"expected max_new_tokens between 1 and the server's {ner.max_new_tokens}, got {limit}",
            )
        return texts, labels, Decoding(kind, limit)

    def submit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        constrain: str | None = None,
        max_new_tokens: int | None = None,
    ) -> Submission:
        """Queue a request (its ``future`` gives its extractions). ``constrain``: ``"none"``, ``"json"``
        or ``"grounded"`` (``None``: the extractor's); ``max_new_tokens`` at most the
        extractor's. Raises :class:`LimitExceeded`, :class:`~uner.errors.InputError` or, when
        the queue is full or the service stopping, :class:`ServiceBusy`."""
        texts, labels, decoding = self.check(texts, labels, constrain, max_new_tokens)
        request = Submission(len(texts))
        self._queue.put_all([TextTask((request, i), text, labels, decoding) for i, text in enumerate(texts)])
        return request

    def _serve(self) -> None:
        while True:
            try:
                for task, extraction in self.extractor.stream(self._queue, self._task_failed, self.engine_stats):
                    request, index = task.key
                    self.counters.texts += 1
                    self.counters.queries += len(task.labels)
                    request.text_done(index, extraction)
                    if request.pending == 0:
                        self._queue.settled(request)
                return  # the queue was closed and drained
            except Exception as exc:  # a backend failure: fail what it was decoding, keep serving
                failed = self._queue.take_in_flight()
                logger.error("Error: the engine failed (%s); failing %d requests", first_line(exc), len(failed))
                for request in failed:
                    request.fail(RuntimeError(f"the engine failed: {first_line(exc)}"))
                time.sleep(0.1)

    def _task_failed(self, task: TextTask, exc: UnerError) -> None:
        request, _ = task.key
        self._queue.settled(request)
        request.fail(exc)

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking requests, finish those queued and in flight, then free the model. False
        when the engine was still busy after ``timeout`` seconds (the model is then left open)."""
        self._queue.close()
        self._worker.join(timeout)
        if self._worker.is_alive():
            return False
        self.extractor.close()
        return True
