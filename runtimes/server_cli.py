"""``uner serve``: the command line of :mod:`uner.server` (imported only when the command runs,
so ``uner`` works without the ``serve`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from uner._cli_utils import (
    BackendChoice,
    BackendOpt,
    KvCacheChoice,
    KvCacheOpt,
    ProviderChoice,
    ProviderOpt,
    QuietOpt,
    ThreadsOpt,
    backend_options,
    setup_logging,
)
from uner.base import DEFAULT_MAX_NEW_TOKENS
from uner.constraints import check_constraint
from uner.errors import UnerError
from uner.hub import parse_variant_ref
from uner.loading import detect_backend

SERVE_EXAMPLES = """
Examples:
  uner serve --model ./out/UniNER-7B-type.Q4_K_M.gguf --port 8080
  uner serve --model me/UniNER-7B-type-uner:q4_k_m --host 0.0.0.0 --port 8080 --threads 8
  curl -s localhost:8080/v1/extract -d '{"texts": ["Barack Obama visited Paris."], "labels": ["person", "location"]}'
  open http://localhost:8080/ (a page to try it), /docs (the API), /metrics (Prometheus)
"""


def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A .gguf file, an ONNX export folder, a Hugging Face model folder, or org/name:variant.",
            show_default=False,
        ),
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface, reachable by others).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: a free one).")] = 8080,
    constrain: Annotated[
        str, typer.Option("--constrain", help="Default constraint: none, json or grounded (a request may set its own).")
    ] = "none",
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Generation limit per answer (requests may ask for less).")
    ] = DEFAULT_MAX_NEW_TOKENS,
    max_texts: Annotated[int, typer.Option("--max-texts", min=1, help="Texts per request.")] = 64,
    max_labels: Annotated[int, typer.Option("--max-labels", min=1, help="Labels per request.")] = 32,
    max_chars: Annotated[int, typer.Option("--max-chars", min=1, help="Characters of text per request.")] = 100_000,
    queue_size: Annotated[
        int, typer.Option("--queue-size", min=1, help="Texts waiting for the engine before requests get 503.")
    ] = 256,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds a request may take before it gets 504.")
    ] = 300.0,
    parallel_texts: Annotated[
        int | None,
        typer.Option(
            "--parallel-texts",
            min=1,
            help="GGUF models: texts (from any clients) whose answers decode at once (default: the backend's).",
            show_default=False,
        ),
    ] = None,
    max_batch_rows: Annotated[
        int | None,
        typer.Option(
            "--max-batch-rows",
            min=1,
            help="torch and ONNX models: answers (of any clients' texts) decoded at once (default: 32).",
            show_default=False,
        ),
    ] = None,
    backend: BackendOpt = BackendChoice.auto,
    provider: ProviderOpt = ProviderChoice.auto,
    kv_cache: KvCacheOpt = KvCacheChoice.auto,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Serve a model over HTTP: POST /v1/extract, GET /health, /v1/model, /metrics, /docs and a page at /."""
    setup_logging(quiet)
    try:
        from uner import server
        from uner.service import Limits
    except ImportError as exc:
        raise UnerError(
            f'uner serve needs FastAPI and uvicorn ({exc.name} is missing): pip install "uner-toolkit[serve]"'
        ) from None
    kind = check_constraint(None if constrain == "none" else constrain)
    if parse_variant_ref(model) is None:
        detect_backend(model)  # a missing or unreadable path is an error now, not after the server started
    options = {"max_new_tokens": max_new_tokens, "n_threads": threads, "constrain": kind}
    options.update(backend_options(kv_cache, False))
    if parallel_texts is not None:
        options["parallel_texts"] = parallel_texts
    if max_batch_rows is not None:
        options["max_batch_rows"] = max_batch_rows
    if provider is not ProviderChoice.auto:
        options["provider"] = provider.value
    limits = Limits(max_texts, max_labels, max_chars, queue_size=queue_size, timeout_s=timeout)
    host_state = server.ModelHost.for_model(model, backend.value, limits, **options)
    sock = server.bind(host, port)
    raise typer.Exit(server.run(host_state, sock, access_log=not quiet))


serve.epilog = SERVE_EXAMPLES
