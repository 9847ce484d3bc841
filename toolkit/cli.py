"""``uner-export``: turn a UniNER checkpoint into artifacts that run anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runtimes._cli_utils import ForceOpt, QuietOpt, ThreadsOpt, run_app, setup_logging, typer_factory
from toolkit.constants import QUANT_TYPES, OutType
from toolkit.pipeline import export_gguf_ladder

GGUF_EXAMPLES = f"""
Examples:
  uner-export gguf ./UniNER-7B-type --out ./out --outtype f16 --quant q8_0,q4_k_m

Quant types: {", ".join(QUANT_TYPES)}
"""

app = typer_factory("Export UniNER checkpoints to GGUF (and later ONNX) and quantize them.")


@app.command(epilog=GGUF_EXAMPLES)
def gguf(
    source: Annotated[Path, typer.Argument(help="Hugging Face LLaMA model folder.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", show_default=False)],
    outtype: Annotated[OutType, typer.Option("--outtype", help="Type of the converted (unquantized) GGUF.")] = OutType.f16,
    quant: Annotated[
        str, typer.Option("--quant", help="Comma-separated llama.cpp quant types to build from it.", show_default=False)
    ] = "",
    name: Annotated[str | None, typer.Option("--name", help="Model name in file names (default: folder name).", show_default=False)] = None,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Accept pytorch_model*.bin (unpickling runs code: trusted files only).")
    ] = False,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Convert a HF checkpoint to GGUF and quantize it; writes manifest.json."""
    setup_logging(quiet)
    result = export_gguf_ladder(
        source, out, outtype, quant,
        name=name, allow_pickle=allow_pickle, force=force, n_threads=threads, progress=not quiet,
    )
    for path in [*result.files, result.manifest]:
        typer.echo(str(path))


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv)


if __name__ == "__main__":
    main()
