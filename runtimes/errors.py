"""Exceptions shared by the inference and export sides.

Every error a user can cause derives from :class:`UnerError`; the CLIs turn it into a
one-line ``Error: ...`` message and a non-zero exit instead of a traceback.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters), or its type's name when
    it has none: what a one-line ``Error:`` can quote of a library's multi-line exception."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (or just ``TypeName``), for errors from a boundary
    (network, Hub) whose type says as much as their message."""
    line = first_line(exc)
    name = type(exc).__name__
    return name if line == name else f"{name}: {line}"


class UnerError(Exception):
    """Base class for errors caused by input, artifacts or the environment (not bugs)."""


class InputError(UnerError):
    """The caller passed something unusable: empty labels, non-UTF-8 text, bad options."""


class ModelNotFound(UnerError):
    """A model path does not exist or is not an artifact any backend can load."""


class BackendUnavailable(UnerError):
    """A backend's optional dependency is not installed (or too old); the message gives the pip line."""

    def __init__(self, backend: str, package: str, extra: str, reason: str | None = None) -> None:
        if reason is None:
            message = f"the {backend} backend needs the '{package}' package: pip install \"uner-toolkit[{extra}]\""
        else:
            message = (
                f"the {backend} backend cannot run on this install: {reason}; "
                f'pip install --upgrade "uner-toolkit[{extra}]"'
            )
        super().__init__(message)
        self.backend, self.package, self.extra, self.reason = backend, package, extra, reason

    def __reduce__(self):
        # pickled by its own arguments: the bench reports it from a child process, and the
        # default (the message as the only argument) cannot rebuild it
        return type(self), (self.backend, self.package, self.extra, self.reason)


class ExtractorClosed(UnerError):
    """An extractor was used after ``close()`` (or after its ``with`` block)."""


class ExtractorBusy(UnerError):
    """An extractor was called again from the thread whose earlier ``run_many`` is still open."""


class ProviderUnavailable(UnerError):
    """An ONNX Runtime execution provider was asked for but this install cannot run it."""


class DistributedError(UnerError):
    """A run on Ray failed on the cluster: a worker could not load the model, or Ray itself failed."""


class IntegrityError(UnerError):
    """A file does not match the size or sha256 its manifest records."""
