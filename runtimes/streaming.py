"""Texts in, extractions out as each one completes: the core of ``run_many`` (which puts them
back in input order) and of the server (which answers each request as soon as its own texts
are done, while other requests' texts keep decoding in the same batch).

A :class:`TextTask` is one text with its labels (and, from a server, its own decoding); the
:class:`TaskJobs` feed cuts each into windows, hands their prompts to the engine as jobs and
assembles a text's :class:`~uner.extraction.Extraction` from its windows' answers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from uner.checks import check_text
from uner.engine import Decoding, Job
from uner.errors import UnerError
from uner.extraction import Extraction, TextResult, WindowBar

if TYPE_CHECKING:
    from uner.base import GenerativeExtractor


@dataclass
class TextTask:
    """One text to read for ``labels`` (checked already); ``key`` names it in the results."""

    key: Hashable
    text: str
    labels: list[str]
    decoding: Decoding | None = None  # None: the extractor's own settings


class TaskSource(Protocol):
    """Tasks that arrive while others decode (:class:`uner.engine.JobFeed`, one level up)."""

    def next_task(self, wait: bool) -> TextTask | None:
        """The next task, or ``None``: none ready yet (``wait`` False) or none ever again."""


class _IterTasks:
    def __init__(self, tasks: Iterable[TextTask]) -> None:
        self._tasks = iter(tasks)

    def next_task(self, wait: bool) -> TextTask | None:
        return next(self._tasks, None)


#: called with a task whose text cannot be read (a prompt too long for the context...)
OnError = Callable[[TextTask, UnerError], None]


class TaskJobs:
    """A :class:`~uner.engine.JobFeed` of the windows of each task's text, and the assembly of
    each text's extraction as its windows' answers come back (in any order).

    Args:
        extractor: cuts the windows, builds the prompts, reads the answers.
        tasks: an iterable of tasks, or a :class:`TaskSource` (a server's queue).
        on_error: without it, a task whose text cannot be read raises (``run_many``); with it,
            that task is reported there and the others go on (a server).
    """

    def __init__(
        self,
        extractor: GenerativeExtractor,
        tasks: Iterable[TextTask] | TaskSource,
        bar: WindowBar,
        on_error: OnError | None = None,
    ) -> None:
        self._ner = extractor
        self._source = tasks if hasattr(tasks, "next_task") else _IterTasks(tasks)
        self._bar = bar
        self._on_error = on_error
        self._ready: list[Job] = []  # the current task's jobs not handed out yet, last first
        self._results: dict[int, tuple[TextTask, TextResult]] = {}  # by task serial
        self._owners: dict[int, tuple[int, int, int, str]] = {}  # job -> (task serial, window, offset, piece)
        self._tasks_taken = 0
        self._jobs_handed = 0

    def next_job(self, wait: bool) -> Job | None:
        while not self._ready:
            task = self._source.next_task(wait)
            if task is None:
                return None
            try:
                self._ready = self._jobs_of(task)[::-1]
            except UnerError as exc:
                if self._on_error is None:
                    raise
                self._on_error(task, exc)
        self._jobs_handed += 1
        return self._ready.pop()

    def __iter__(self) -> Iterator[Job]:
        """The jobs, waiting for each (for backends whose ``generate_jobs`` takes an iterable)."""
        while (job := self.next_job(wait=True)) is not None:
            yield job

    def _jobs_of(self, task: TextTask) -> list[Job]:
        ner, decoding = self._ner, task.decoding
        windows = ner.windows(check_text(task.text), task.labels)
        serial, first = self._tasks_taken, self._jobs_handed
        jobs = []
        for window, (offset, piece) in enumerate(windows):
            jobs.append(Job([ner.prompt_ids(piece, label) for label in task.labels], piece, decoding))
            self._owners[first + window] = (serial, window, offset, piece)
        # only once every prompt was built: a task that failed leaves nothing behind
        self._tasks_taken += 1
        self._results[serial] = (task, TextResult(Extraction(text=task.text), len(windows), task.labels))
        self._bar.expect(len(windows))
        return jobs

    def finish(self, job: int, outputs: list[list[int]]) -> tuple[TextTask, Extraction] | None:
        """Record job ``job``'s answers: its task and extraction once this completes the text."""
        serial, window, offset, piece = self._owners.pop(job)
        task, result = self._results[serial]
        limit = task.decoding.max_new_tokens if task.decoding is not None else None
        result.add(window, offset, piece, [self._ner.answer_text(ids, limit) for ids in outputs])
        self._bar.done()
        if not result.complete:
            return None
        del self._results[serial]
        return task, result.finish()
