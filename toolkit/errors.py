"""Export-side errors; all are :class:`uner.errors.UnerError`, so the CLIs report them in one line."""

from __future__ import annotations

from uner.errors import InputError, UnerError


class CheckpointError(UnerError):
    """The source checkpoint is missing, incomplete, corrupt or of an unsupported architecture."""


class OutputExists(InputError):
    """An output file exists and ``--force`` was not given."""


class QuantizeError(UnerError):
    """llama.cpp could not quantize a file."""


class RecipeError(InputError):
    """An export recipe is missing, unreadable or inconsistent."""


class PublishError(UnerError):
    """A push was refused (existing files, nothing publishable) or the Hub rejected it."""
