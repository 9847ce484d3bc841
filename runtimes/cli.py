"""``uner``: run UniNER models offline."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from uner._cli_utils import (
    AllowPickleRunOpt,
    BackendChoice,
    BackendOpt,
    KvCacheChoice,
    KvCacheOpt,
    ModelOpt,
    ProviderChoice,
    ProviderOpt,
    QuietOpt,
    ThreadsOpt,
    add_plugin_commands,
    backend_options,
    run_app,
    setup_logging,
    typer_factory,
)
from uner.base import DEFAULT_MAX_NEW_TOKENS, Extraction, GenerativeExtractor
from uner.corpus import check_resume, extract_corpus
from uner.errors import InputError
from uner.inputs import iter_documents, read_labels_file, read_texts, split_labels
from uner.loading import load
from uner.server_cli import SERVE_EXAMPLES, serve
from uner.windows import DEFAULT_WINDOW

EXTRACT_EXAMPLES = """
Examples:
  uner extract -m out/UniNER-7B-type.Q4_K_M.gguf -l person,location -t "Barack Obama visited Paris."
  uner extract -m out/UniNER-7B-type.Q4_K_M.gguf -l person --input texts.txt --json --raw
  uner extract -m out/UniNER-7B-type.Q4_K_M.gguf --labels-file labels.txt --input docs.jsonl --output out.jsonl
  uner extract -m out/onnx-int4 -l person,location -t "Barack Obama visited Paris." --constrain grounded
  uner extract -m me/UniNER-7B-type-uner:q4_k_m --labels-file labels.txt --input 'corpus/*.jsonl' --output out/ \\
      --ray --workers 2 --threads-per-worker 1
"""


class ConstrainChoice(str, Enum):
    none = "none"
    json = "json"
    grounded = "grounded"


app = typer_factory("Run UniNER models offline: extract entities of any type from text.")


def _print_plain(extraction: Extraction, show_raw: bool) -> None:
    typer.echo(extraction.text)
    for entity in extraction.entities:
        typer.echo(f"  {entity.label}\t{entity.text}\t[{entity.start}:{entity.end}]")
    if not extraction.entities:
        typer.echo("  (no entities)")
    if show_raw:
        for label, raw in extraction.raw.items():
            typer.echo(f"  raw {label}: {raw}")


@app.command(epilog=EXTRACT_EXAMPLES)
def extract(
    model: ModelOpt,
    labels: Annotated[
        str, typer.Option("--labels", "-l", help="Comma-separated entity types.", show_default=False)
    ] = "",
    labels_file: Annotated[
        Path | None, typer.Option("--labels-file", help="Entity types, one per line.", show_default=False)
    ] = None,
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="A text to read (repeatable).", show_default=False)
    ] = None,
    input: Annotated[  # a str, not a Path: with --ray it may be a URI, which Path would mangle (s3:/…)
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="File of texts: one per line, or .jsonl with 'text' (and 'id'); '-' for stdin. With --ray: "
            "files, a glob or a URI (s3://…).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=(
                "Write JSON lines (id, entities) here, with a progress bar; rerunning skips ids already written "
                "(same labels and model only)."
            ),
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per text.")] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Also show the model's unparsed answer per label (and, with --json, answers not found in the text).",
        ),
    ] = False,
    constrain: Annotated[
        ConstrainChoice,
        typer.Option(
            "--constrain", help="Restrict answers to JSON lists of strings (json), or of spans of the text (grounded)."
        ),
    ] = ConstrainChoice.none,
    per_query: Annotated[
        bool,
        typer.Option(
            "--per-query",
            help="One prompt per entity type, as UniNER's own code (slower; no shared prefill or batching).",
        ),
    ] = False,
    no_loop_guard: Annotated[
        bool,
        typer.Option(
            "--no-loop-guard",
            help="Generate every token of every answer (exact token parity with UniNER's own code) instead of "
            "ending answers once their parse can no longer change.",
        ),
    ] = False,
    close_loops: Annotated[
        bool,
        typer.Option(
            "--close-loops",
            help="Read an answer cut inside its list (a loop, or the token limit) up to its last complete "
            "mention, instead of as [] like the official parser (changes F1).",
        ),
    ] = False,
    window: Annotated[
        int,
        typer.Option(
            "--window", min=64, help="Prompt + answer tokens per window; longer texts are read in overlapping windows."
        ),
    ] = DEFAULT_WINDOW,
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run the corpus on Ray Data: --input files or globs (.jsonl, .parquet), --output a folder of part "
            "files (resumable, each document exactly once).",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --ray: the cluster (ray://head:10001, host:port, auto); default: $RAY_ADDRESS, a cluster "
            "running on this machine, else one started for the run.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="With --ray: model-holding workers.")] = 1,
    threads_per_worker: Annotated[
        int, typer.Option("--threads-per-worker", min=1, help="With --ray: threads (and CPUs reserved) per worker.")
    ] = 1,
    output_format: Annotated[
        str, typer.Option("--output-format", help="With --ray: parquet or jsonl part files.")
    ] = "parquet",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="With --ray: documents per worker call, decoded together.")
    ] = 16,
    part_rows: Annotated[
        int,
        typer.Option(
            "--part-rows",
            min=1,
            help="With --ray: documents per part file (one is also committed every minute); a stopped run loses "
            "at most the part being filled.",
        ),
    ] = 1000,
    backend: BackendOpt = BackendChoice.auto,
    provider: ProviderOpt = ProviderChoice.auto,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Generation limit per answer.")
    ] = DEFAULT_MAX_NEW_TOKENS,
    kv_cache: KvCacheOpt = KvCacheChoice.auto,
    allow_pickle: AllowPickleRunOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Extract entities of the given types from texts or a corpus."""
    setup_logging(quiet)
    label_list = _labels(labels, labels_file)
    if output is not None and (input is None or text):
        raise InputError("expected --output with an --input file (and no --text)")
    options = {
        "max_new_tokens": max_new_tokens,
        "n_threads": threads,
        "batched": not per_query,
        "constrain": None if constrain is ConstrainChoice.none else constrain.value,
        "window": window,
        "loop_guard": not no_loop_guard,
        "close_loops": close_loops,
        "progress": not quiet,
        **backend_options(kv_cache, allow_pickle),
    }
    if provider is not ProviderChoice.auto:
        options["provider"] = provider.value
    input_path = Path(input) if input is not None else None
    if on_ray:
        if input is None or output is None:
            raise InputError("expected --input files and an --output folder with --ray")
        for flag, given in (("--threads (use --threads-per-worker)", threads), ("--raw", raw), ("--json", as_json)):
            if given:
                raise InputError(f"expected no {flag} with --ray, which writes {{id, entities}} part files")
        _run_on_ray(ray_address, input, output, _model_id(model), label_list, workers, threads_per_worker,
                    output_format, backend, {**options, "batch_size": batch_size, "part_rows": part_rows})  # fmt: skip
        return
    if output is not None:
        _corpus(model, input_path, output, label_list, backend, options, raw, quiet)
        return
    texts = list(text or []) + (read_texts(input_path) if input_path is not None else [])
    if not texts:
        raise InputError("expected a text (--text) or an input file (--input), got neither")
    with load(model, backend=backend.value, **options) as ner:
        _check_window(ner, label_list)
        for extraction in ner.run_many(texts, label_list):
            if as_json:
                typer.echo(json.dumps(extraction.to_dict(include_raw=raw), ensure_ascii=False))
            else:
                _print_plain(extraction, raw)


def _run_on_ray(address, input, output, model, labels, workers, threads_per_worker, output_format, backend, options):
    from uner.distributed import extract_files  # only here: without --ray nothing imports Ray
    from uner.distributed_session import quiet_ray, run_on_ray

    # the workers' threads are --threads-per-worker, and they always decode in batches
    options = {key: value for key, value in options.items() if key not in ("n_threads", "batched")}
    reports = contextlib.nullcontext() if os.environ.get("UNER_DEBUG") == "1" else quiet_ray()
    with reports:
        done = run_on_ray(
            address, extract_files, [input], output, model, labels, workers, threads_per_worker, output_format,
            backend=backend.value, **options,
        )  # fmt: skip
    logging.getLogger(__name__).info(
        "wrote %d documents to %s (%d already there, %d rejected)", done.written, output, done.skipped, done.rejected
    )


PULL_EXAMPLES = """
Examples:
  uner pull me/UniNER-7B-type-uner --variant q4_k_m
  HF_HUB_OFFLINE=1 uner extract --model me/UniNER-7B-type-uner:q4_k_m -l person -t "Barack Obama visited Paris."
"""


@app.command(epilog=PULL_EXAMPLES)
def pull(
    repo_id: Annotated[str, typer.Argument(help="Hub repo made by uner-export push (org/name).", show_default=False)],
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            help="Variant to download (q4_k_m, onnx-int4...); without it, the error lists them.",
            show_default=False,
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch, tag or commit (default: main).", show_default=False)
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if cached (e.g. after a failed check).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Download one published variant (and the repo's manifest), check its sha256; prints its local path."""
    setup_logging(quiet)
    from uner.hub import parse_variant_ref
    from uner.hub import pull as pull_variant

    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if variant is None and (ref := parse_variant_ref(repo_id)):
        repo_id, variant = ref
    typer.echo(str(pull_variant(repo_id, variant, revision=revision, force=force)))


def _corpus(
    model: Path,
    input: Path,
    output: Path,
    labels: list[str],
    backend: BackendChoice,
    options: dict,
    raw: bool,
    quiet: bool,
) -> None:
    """``extract --output``: every check that needs no model first, then the corpus run."""
    if _same_file(input, output):
        raise InputError(
            f"expected --output to be another file than --input, got {output} for both: choose a new --output"
        )
    model_id = _model_id(model)
    check_resume(output, labels, model_id)
    # reads the whole file before loading the model: duplicate ids are an error at once, and
    # so is a file with no readable document at all (not one warning per line, then nothing)
    total, readable, first_bad = 0, 0, None
    for document in iter_documents(input):
        total += 1
        if document.problem is None:
            readable += 1
        elif first_bad is None:
            first_bad = document
    if first_bad is not None and not readable:
        raise InputError(
            f"expected at least one readable document in {input}, got none of {total}; "
            f"{first_bad.describe()}: {first_bad.problem}"
        )
    with load(model, backend=backend.value, **options) as ner:
        _check_window(ner, labels)
        done = extract_corpus(
            ner, iter_documents(input), labels, output, model=model_id, include_raw=raw, total=total, progress=not quiet
        )
    log = logging.getLogger(__name__)
    summary = f"wrote {done.written} documents to {output} ({done.skipped} already there)"
    if done.rejected:  # a warning, so --quiet shows it too
        log.warning("%s; skipped %d unreadable documents (see the warnings above)", summary, done.rejected)
    else:
        log.info("%s", summary)


def _same_file(input: Path, output: Path) -> bool:
    """Whether ``output`` names ``input`` (any spelling: ``./a``, ``a``, a symlink, a hard link)."""
    if output.resolve() == input.resolve():
        return True
    try:
        return os.path.samefile(input, output)
    except OSError:  # either does not exist (yet): not the same file
        return False


def _model_id(model: Path) -> str:
    """How the corpus sidecar names the model: a local path absolute, with symlinks resolved
    (so ``./m.gguf`` and ``m.gguf`` are one model); anything else (``org/name:variant``) as given."""
    return str(model.resolve()) if model.exists() else str(model)


def _check_window(ner: GenerativeExtractor, labels: list[str]) -> None:
    """Whether ``--window`` leaves room for text beside the prompt and the answer: checked
    once, before any text is read, rather than on the first text (or never, on a resume)."""
    ner.windows("", labels)  # raises InputError when no text can ever fit


def _labels(labels: str, labels_file: Path | None) -> list[str]:
    if labels_file is not None:
        from_file = read_labels_file(labels_file)
        return list(dict.fromkeys(from_file + (split_labels(labels) if labels.strip() else [])))
    return split_labels(labels)


app.command(epilog=SERVE_EXAMPLES)(serve)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``uner``; ``uner bench`` comes from the bench through an entry point."""
    add_plugin_commands(app, "uner.commands")
    run_app(app, argv)


if __name__ == "__main__":
    main()
