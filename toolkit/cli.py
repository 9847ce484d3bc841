"""``uner-export``: turn a UniNER checkpoint into artifacts that run anywhere."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from uner._cli_utils import ForceOpt, QuietOpt, ThreadsOpt, add_plugin_commands, run_app, setup_logging, typer_factory
from uner.errors import IntegrityError
from uner.manifest import read_manifest, verify_folder
from uner.onnx_layout import EXPORT_TARGETS, PRECISIONS, PROVIDERS
from uner.toolkit.constants import EMBEDDING_TYPES, PROJECTIONS, QUANT_TYPES, OutType
from uner.toolkit.export_onnx import export_onnx
from uner.toolkit.files import check_writable
from uner.toolkit.imatrix import DEFAULT_TOKENS, MODES, collect, write_imatrix
from uner.toolkit.onnx_settings import BLOCK_SIZES, DEFAULT_BLOCK_SIZE
from uner.toolkit.pipeline import export_gguf_ladder
from uner.toolkit.publish import describe, plan_push
from uner.toolkit.publish import push as publish

GGUF_EXAMPLES = f"""
Examples:
  uner-export gguf ./UniNER-7B-type --out ./out --outtype f16 --quant q8_0,q4_k_m
  uner-export gguf ./SmolLM2-135M-Instruct --adapter bench/uniner_smol_v1/adapter --name uniner-smol-135m --out ./out

Quant types: {", ".join(QUANT_TYPES)}
"""

ONNX_EXAMPLES = """
Examples:
  uner-export onnx ./UniNER-7B-type --out ./out/onnx-int4 --precision int4                # CPU edge box
  uner-export onnx ./UniNER-7B-type --out ./out/onnx-fp16 --precision fp16 --device cuda
  uner-export onnx ./UniNER-7B-type --out ./out/onnx-int4-mixed --int8-projections qkv_proj,up_proj
  uner-export onnx ./UniNER-7B-type --out ./out/onnx-int4-gptq --gptq-data ../shared/data/conll2003/train.txt

Precision / device: {targets}.
""".format(targets=", ".join(f"{p} {'|'.join(d)}" for p, d in EXPORT_TARGETS.items()))


# Choices come from the layout contract, so the CLI cannot offer what the exporter lacks.
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)
Device = Enum("Device", {name: name for name in reversed(PROVIDERS)}, type=str)
DEFAULT_PRECISION = Precision("int4")
CalibrationMode = Enum("CalibrationMode", {name: name for name in MODES}, type=str)


AllowPickleOpt = Annotated[
    bool, typer.Option("--allow-pickle", help="Accept pytorch_model*.bin (unpickling runs code: trusted files only).")
]

AdapterOpt = Annotated[
    Path | None,
    typer.Option(
        "--adapter", help="PEFT LoRA adapter folder to merge into SOURCE before converting.", show_default=False
    ),
]

logger = logging.getLogger(__name__)

app = typer_factory("Export UniNER checkpoints to GGUF or ONNX and quantize them.")


@app.command(epilog=GGUF_EXAMPLES)
def gguf(
    source: Annotated[Path, typer.Argument(help="Hugging Face LLaMA model folder.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", show_default=False)],
    outtype: Annotated[
        OutType, typer.Option("--outtype", help="Type of the converted (unquantized) GGUF.")
    ] = OutType.f16,
    quant: Annotated[
        str, typer.Option("--quant", help="Comma-separated llama.cpp quant types to build from it.", show_default=False)
    ] = "",
    name: Annotated[
        str | None, typer.Option("--name", help="Model name in file names (default: folder name).", show_default=False)
    ] = None,
    embedding_type: Annotated[
        str | None,
        typer.Option(
            "--embedding-type",
            help=(
                f"Token-embedding and output tensor type in quantized files ({', '.join(EMBEDDING_TYPES)}), as "
                "llama-quantize --token-embedding-type/--output-tensor-type (a tied small model's largest tensor)."
            ),
            show_default=False,
        ),
    ] = None,
    imatrix: Annotated[
        Path | None,
        typer.Option(
            "--imatrix",
            help="Importance matrix (uner-export imatrix, or llama.cpp's GGUF imatrix) the quantizer weighs by.",
            show_default=False,
        ),
    ] = None,
    adapter: AdapterOpt = None,
    allow_pickle: AllowPickleOpt = False,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Convert a HF checkpoint to GGUF and quantize it; writes manifest.json."""
    setup_logging(quiet)
    result = export_gguf_ladder(
        source,
        out,
        outtype,
        quant,
        name=name,
        adapter=adapter,
        allow_pickle=allow_pickle,
        force=force,
        n_threads=threads,
        embedding_type=embedding_type,
        imatrix=imatrix,
        progress=not quiet,
    )
    for path in [*result.files, result.manifest]:
        typer.echo(str(path))


@app.command(epilog=ONNX_EXAMPLES)
def onnx(
    source: Annotated[Path, typer.Argument(help="Hugging Face LLaMA model folder.", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (one precision per folder).", show_default=False)
    ],
    precision: Annotated[Precision, typer.Option("--precision", "-p", help="Weight precision.")] = DEFAULT_PRECISION,
    device: Annotated[
        Device | None,
        typer.Option(
            "--device", help="Target execution provider (default: cuda for fp16, else cpu).", show_default=False
        ),
    ] = None,
    block_size: Annotated[
        int | None,
        typer.Option(
            "--block-size",
            help=f"int4/int8 quantization block, one of {BLOCK_SIZES} (default {DEFAULT_BLOCK_SIZE}).",
            show_default=False,
        ),
    ] = None,
    accuracy_level: Annotated[
        int | None,
        typer.Option(
            "--accuracy-level",
            help="int4/int8 MatMulNBits compute: 1 fp32, 2 fp16, 3 bf16, 4 int8 (CPU default 4).",
            show_default=False,
        ),
    ] = None,
    asymmetric: Annotated[
        bool | None,
        typer.Option(
            "--asymmetric/--symmetric",
            help="int4/int8: a zero point per block (its own range), or blocks centred on zero"
            " (default: asymmetric int4, symmetric int8).",
            show_default=False,
        ),
    ] = None,
    head_bits: Annotated[
        int | None,
        typer.Option(
            "--head-bits",
            help="int4: store the lm_head (and a tied embedding) at 8 bits, the tensor every logit reads.",
            show_default=False,
        ),
    ] = None,
    int8_projections: Annotated[
        str | None,
        typer.Option(
            "--int8-projections",
            help=f"int4: decoder projections kept at 8 bits in every layer, comma-separated, among {PROJECTIONS}.",
            show_default=False,
        ),
    ] = None,
    gptq_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--gptq-data",
            help="int4: round by GPTQ, with each layer's input Hessian measured on UniNER conversations"
            " from this training file (repeatable; CoNLL/BIO or UniNER JSON; never the eval files).",
            show_default=False,
        ),
    ] = None,
    gptq_tokens: Annotated[
        int | None,
        typer.Option(
            "--gptq-tokens",
            min=1,
            help=f"Calibration tokens for --gptq-data (default {DEFAULT_TOKENS}).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Model name in the manifest (default: folder name).", show_default=False),
    ] = None,
    adapter: AdapterOpt = None,
    allow_pickle: AllowPickleOpt = False,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a HF checkpoint to an ONNX Runtime folder (KV cache); writes manifest.json."""
    setup_logging(quiet)
    result = export_onnx(
        source,
        out,
        precision.value,
        device.value if device else None,
        block_size=block_size,
        accuracy_level=accuracy_level,
        symmetric=None if asymmetric is None else not asymmetric,
        head_bits=head_bits,
        int8_projections=tuple(filter(None, (int8_projections or "").split(","))),
        gptq_data=tuple(gptq_data or ()),
        gptq_tokens=gptq_tokens,
        name=name,
        adapter=adapter,
        allow_pickle=allow_pickle,
        force=force,
        progress=not quiet,
    )
    typer.echo(str(result.folder))


PUSH_EXAMPLES = """
Examples:
  uner-export push ./out --repo-id me/UniNER-7B-type-uner --dry-run
  uner-export push ./out --repo-id me/UniNER-7B-type-uner --private
"""


@app.command(epilog=PUSH_EXAMPLES)
def push(
    folder: Annotated[Path, typer.Argument(help="Output folder of uner-export recipe.", show_default=False)],
    repo_id: Annotated[
        str, typer.Option("--repo-id", help="Hub repo to create or update (org/name).", show_default=False)
    ],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the planned commit (files, sizes, model card); no network.")
    ] = False,
    include_failed: Annotated[
        bool, typer.Option("--include-failed", help="Also upload variants that failed or skipped their parity gate.")
    ] = False,
    variant: Annotated[
        list[str] | None, typer.Option("--variant", help="Upload only these variants (repeatable).", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist in the repo.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Upload the checked variants, a model card and the manifest to the Hub in one commit."""
    setup_logging(quiet)
    plan = plan_push(folder, repo_id, include_failed=include_failed, only=variant, progress=not quiet)
    for name, why in plan.left_out.items():
        logger.warning("left out %s: %s", name, why)
    if dry_run:
        typer.echo(describe(plan, private))
        return
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    typer.echo(publish(plan, private=private, force=force))


IMATRIX_EXAMPLES = """
Examples:
  uner-export imatrix ./UniNER-7B-type --data ../shared/data/conll2003/train.txt \\
      --data ../shared/data/crossner_ai/train.txt --out imatrix.gguf
  uner-export gguf ./UniNER-7B-type --out ./out --quant q4_k_m,iq4_xs --imatrix imatrix.gguf

Calibrate on training splits only: the bench's evaluation files must stay unseen.
"""


@app.command(epilog=IMATRIX_EXAMPLES)
def imatrix(
    source: Annotated[Path, typer.Argument(help="Hugging Face LLaMA model folder.", show_default=False)],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            "-d",
            help="Training file (CoNLL/BIO, or UniNER JSON) to calibrate on (repeatable).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The imatrix file to write (GGUF).", show_default=False)],
    tokens: Annotated[
        int, typer.Option("--tokens", min=1, help="Calibration tokens to run through the model.")
    ] = DEFAULT_TOKENS,
    mode: Annotated[
        CalibrationMode,
        typer.Option("--mode", help="conversations: UniNER prompts and gold answers; plain: the passages alone."),
    ] = CalibrationMode.conversations,
    dtype: Annotated[
        str, typer.Option("--dtype", help="Torch dtype of the model while measuring (float32, bfloat16, ...).")
    ] = "float32",
    output_head: Annotated[
        bool,
        typer.Option(
            "--output-head/--no-output-head",
            help="Also measure the output head's inputs (token_embd.weight when tied); llama-imatrix skips it.",
        ),
    ] = True,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure llama.cpp's importance matrix on UniNER conversations, for `gguf --imatrix`."""
    setup_logging(quiet)
    check_writable([out], force)
    matrix = collect(
        source,
        data,
        tokens=tokens,
        mode=mode.value,
        dtype=dtype,
        n_threads=threads,
        progress=not quiet,
        output=output_head,
    )
    write_imatrix(out, matrix)
    logger.info("%d tensors, %d sequences, %d tokens", len(matrix.sums), matrix.chunks, matrix.tokens)
    typer.echo(str(out))


@app.command()
def verify(
    folder: Annotated[Path, typer.Argument(help="An export folder holding manifest.json.", show_default=False)],
    quiet: QuietOpt = False,
) -> None:
    """Check every file of an export against its manifest.json (size, sha256); names the ones that differ."""
    setup_logging(quiet)
    files = read_manifest(folder)["files"]
    mismatches = verify_folder(folder, progress=not quiet)
    for mismatch in mismatches:
        typer.echo(f"MISMATCH {mismatch}")
    if mismatches:
        raise IntegrityError(f"{len(mismatches)} of {len(files)} files of {folder} differ from its manifest")
    typer.echo(f"OK {len(files)} files match {folder / 'manifest.json'}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``uner-export``; ``recipe`` comes from the bench (it benches every variant)."""
    add_plugin_commands(app, "uner_export.commands")
    run_app(app, argv)


if __name__ == "__main__":
    main()
