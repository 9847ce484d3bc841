"""Exceptions shared by the inference and export sides.

Every error a user can cause derives from :class:`UnerError`; the CLIs turn it into a
one-line ``Error: ...`` message and a non-zero exit instead of a traceback.
"""

from __future__ import annotations


class UnerError(Exception):
    """Base class for errors caused by input, artifacts or the environment (not bugs)."""


class InputError(UnerError):
    """The caller passed something unusable: empty labels, non-UTF-8 text, bad options."""


class ModelNotFound(UnerError):
    """A model path does not exist or is not an artifact any backend can load."""


class BackendUnavailable(UnerError):
    """A backend's optional dependency is not installed; the message gives the pip line."""

    def __init__(self, backend: str, package: str, extra: str) -> None:
        super().__init__(
            f"the {backend} backend needs the '{package}' package: "
            f'pip install "uner-toolkit[{extra}]"'
        )
        self.backend = backend


class ProviderUnavailable(UnerError):
    """An ONNX Runtime execution provider was asked for but this install cannot run it."""


class IntegrityError(UnerError):
    """A file does not match the size or sha256 its manifest records."""
