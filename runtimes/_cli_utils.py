"""Shared CLI plumbing for ``uner`` and ``uner-export``: option aliases and error reporting."""

from __future__ import annotations

import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from runtimes.errors import UnerError


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
    int | None, typer.Option("--threads", min=1, help="CPU threads (default: all cores).", show_default=False)
]
ModelOpt = Annotated[
    Path,
    typer.Option("--model", "-m", help="A .gguf file, an ONNX export folder, a Hugging Face model folder, or org/name:variant (a published variant, pulled once).", show_default=False),
]
BackendOpt = Annotated[BackendChoice, typer.Option("--backend", help="Backend to run the model with.")]
ProviderOpt = Annotated[
    ProviderChoice,
    typer.Option("--provider", help="ONNX models: execution provider (auto tries tensorrt, cuda, cpu)."),
]


def _version() -> None:
    """Print the toolkit version."""
    from runtimes import __version__

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


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run ``app`` and exit: a :class:`UnerError` becomes ``Error: ...`` on stderr and exit 1,
    a usage error exit 2. ``UNER_DEBUG=1`` re-raises so the traceback is shown.
    """
    try:
        app(args=argv, standalone_mode=False)
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
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(0)
