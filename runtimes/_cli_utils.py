"""Shared CLI plumbing for ``uner`` and ``uner-export``: option aliases and error reporting."""

from __future__ import annotations

import errno
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from uner.checks import MAX_THREADS
from uner.errors import UnerError


class BackendChoice(str, Enum):
    auto = "auto"
    torch = "torch"
    llamacpp = "llamacpp"
    onnx = "onnx"


class ProviderChoice(str, Enum):
    auto = "auto"
    tensorrt = "tensorrt"
    cuda = "cuda"
    cpu = "cpu"


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only results: no progress bars or logs.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, max=MAX_THREADS, help="CPU threads (default: all cores).", show_default=False),
]
ModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        "-m",
        help=(
            "A .gguf file, an ONNX export folder, a Hugging Face model folder, or org/name:variant (a published "
            "variant, pulled once)."
        ),
        show_default=False,
    ),
]


class KvCacheChoice(str, Enum):
    auto = "auto"
    f16 = "f16"
    f32 = "f32"


KvCacheOpt = Annotated[
    KvCacheChoice,
    typer.Option(
        "--kv-cache",
        help="GGUF models: llama.cpp KV-cache type (auto: f32 for F32 files, which ask for exactness, else f16).",
    ),
]
AllowPickleRunOpt = Annotated[
    bool,
    typer.Option(
        "--allow-pickle", help="HF folders with pytorch_model*.bin only: unpickle them (runs code: trusted files only)."
    ),
]


def backend_options(kv_cache: KvCacheChoice, allow_pickle: bool) -> dict:
    """The options that only some backends take, passed only when set (so the others never see them)."""
    options: dict = {}
    if kv_cache is not KvCacheChoice.auto:
        options["kv_cache_type"] = kv_cache.value
    if allow_pickle:
        options["allow_pickle"] = True
    return options


BackendOpt = Annotated[BackendChoice, typer.Option("--backend", help="Backend to run the model with.")]
ProviderOpt = Annotated[
    ProviderChoice,
    typer.Option("--provider", help="ONNX models: execution provider (auto tries tensorrt, cuda, cpu)."),
]


def _version() -> None:
    """Print the toolkit version."""
    from uner import __version__

    typer.echo(__version__)


def typer_factory(help: str) -> typer.Typer:
    """Every app gets the same look (no shell-completion noise, -h as well as --help) and a
    ``version`` command."""
    app = typer.Typer(
        help=help,
        add_completion=False,
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
    )
    app.command("version")(_version)
    return app


def add_plugin_commands(app: typer.Typer, group: str) -> None:
    """Add the commands other packages contribute through entry points of ``group`` (``uner
    bench`` and ``uner-export recipe`` from the bench): the core never imports them, and a
    plugin whose dependencies are missing is left out instead of breaking the CLI."""
    from importlib.metadata import entry_points

    present = {command.name for command in app.registered_commands}
    for entry in entry_points(group=group):
        if entry.name in present:
            continue  # main() may run more than once in one process (tests)
        try:
            command = entry.load()
        except ImportError as exc:
            logging.getLogger(__name__).debug("skipping %s: %s", entry.name, exc)
            continue
        app.command(entry.name, epilog=getattr(command, "epilog", None))(command)


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


#: what to do about an OS error, by errno, after the OS's own reason
_OS_HINTS = {
    errno.ENOSPC: "free some space and run again",
    errno.EDQUOT: "free some space and run again",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "check the permissions, or choose another location",
    errno.EPERM: "check the permissions, or choose another location",
    errno.EISDIR: "expected a file there, got a folder",
    errno.ENOTDIR: "expected a folder there, got a file (or a path through one)",
    errno.EEXIST: "expected a folder there, got a file",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OS error: the path(s) it concerns, the OS's reason and what to do.

    >>> os_error_message(PermissionError(13, "Permission denied", "/data/out.jsonl"))
    '/data/out.jsonl: Permission denied (check the permissions, or choose another location)'
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
    message = f"{' -> '.join(paths)}: {reason}" if paths else reason
    return f"{message} ({hint})" if hint else message


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run ``app`` and exit: a :class:`UnerError` becomes ``Error: ...`` on stderr and exit 1,
    and so does an :class:`OSError` (permissions, a full disk, a folder where a file belongs:
    the path and the OS's reason); a usage error exits 2. ``UNER_DEBUG=1`` re-raises so the
    traceback is shown.
    """
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: typer prints usage + message itself
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"Error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Error: aborted", file=sys.stderr)
        sys.exit(1)
    except UnerError as exc:
        if os.environ.get("UNER_DEBUG") == "1":
            raise
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # the environment, not a bug: network errors (OSError too) included
        if os.environ.get("UNER_DEBUG") == "1":
            raise
        print(f"Error: {os_error_message(exc)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        sys.exit(130)
    # with standalone_mode=False typer returns the exit code rather than raising: a command's
    # typer.Exit(n) gives n, and Ctrl-C (which typer catches itself) 130; exiting 0 there would
    # make an interrupted run look finished
    if code == 130:
        print("Error: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
