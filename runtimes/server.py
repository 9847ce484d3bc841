"""``uner serve``: the HTTP API over :class:`uner.service.ExtractionService` (FastAPI + uvicorn).

``POST /v1/extract`` answers what ``uner extract --json`` prints for the same texts; ``GET
/health`` is 503 while the model loads; ``GET /v1/model``, ``GET /metrics`` (Prometheus text),
``GET /docs`` (the API, from ``/openapi.json``) and ``GET /`` (a page to try it); neither loads
anything from elsewhere. Errors are one JSON object
``{"error": {"status", "message", "field"?}}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator

from uner.base import GenerativeExtractor
from uner.errors import InputError, UnerError, first_line
from uner.extraction import Extraction
from uner.hub import parse_variant_ref
from uner.loading import load, resolve_model
from uner.manifest import MANIFEST, read_manifest
from uner.prompt import TEMPLATE
from uner.server_docs import render_api_page
from uner.server_metrics import HttpMetrics
from uner.service import ExtractionService, LimitExceeded, Limits, ServiceBusy

logger = logging.getLogger("uner.serve")
RETRY_AFTER_S = 2  # what a 503 asks the client to wait: loading, or a full queue
ROUTES = ("/", "/health", "/metrics", "/v1/model", "/v1/extract", "/docs", "/openapi.json")


class ExtractBody(BaseModel):
    """``POST /v1/extract``: one text or several, the entity types, optional decoding."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | None = Field(None, description="One text (or give texts).")
    texts: list[StrictStr] | None = Field(None, description="Several texts, answered in order.")
    labels: list[StrictStr] = Field(description='Entity types, e.g. ["person", "location"].')
    constrain: Literal["none", "json", "grounded"] | None = Field(
        None, description="Hold answers to JSON lists (json) or to spans of the text (grounded); default: the server's."
    )
    max_new_tokens: StrictInt | None = Field(None, ge=1, description="Token limit per answer, at most the server's.")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> ExtractBody:
        if (self.text is None) == (self.texts is None):
            raise ValueError("expected exactly one of 'text' and 'texts'")
        return self


def result_dict(extraction: Extraction) -> dict:
    """One text's result: what ``uner extract --json`` prints, minus the text itself."""
    out: dict = {"entities": [entity.to_dict() for entity in extraction.entities]}
    if extraction.ungrounded:
        out["ungrounded"] = {label: list(answers) for label, answers in extraction.ungrounded.items()}
    return out


def describe_model(model: str, path: Path, extractor: GenerativeExtractor) -> dict:
    """``GET /v1/model``: what is served, with the sha256 its export's manifest records."""
    folder = path if path.is_dir() else path.parent
    manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else {}
    files_listed = manifest.get("files", {})
    names = [path.name] if path.is_file() else [n for n in files_listed if n.endswith((".onnx", ".data", ".gguf"))]
    ref = parse_variant_ref(model)
    if ref is not None:
        variant = ref[1]
    elif path.suffix.lower() == ".gguf":
        variant = path.stem.rsplit(".", 1)[-1].lower() if "." in path.stem else None
    else:
        variant = manifest.get("precision")
    return {
        "model": model,
        "name": manifest.get("model") or (path.stem if path.is_file() else path.name),
        "backend": extractor.name,
        "variant": variant,
        "sha256": {name: files_listed.get(name, {}).get("sha256") for name in names} or None,
        "prompt_template": TEMPLATE,
        "context_length": extractor.context_length,
        "max_new_tokens": extractor.max_new_tokens,
        "constrain": extractor.constrain or "none",
    }


@dataclass
class ModelHost:
    """The model behind the server: loaded in the background so ``/health`` answers meanwhile."""

    load: Callable[[], GenerativeExtractor]
    describe: Callable[[GenerativeExtractor], dict]  # GET /v1/model
    limits: Limits = field(default_factory=Limits)
    on_failure: Callable[[], None] | None = None  # called once loading failed (the CLI stops the server)
    service: ExtractionService | None = None
    info: dict | None = None
    failure: str | None = None

    @classmethod
    def for_model(cls, model: str, backend: str = "auto", limits: Limits | None = None, **options) -> ModelHost:
        """A host that loads ``model`` (:func:`uner.load`'s reference and options) when started."""
        resolved: list[Path] = []

        def load_model():
            resolved.append(resolve_model(model))  # may download org/name:variant: part of loading
            return load(resolved[-1], backend=backend, **options)

        return cls(load_model, lambda extractor: describe_model(model, resolved[-1], extractor), limits or Limits())

    def start_loading(self) -> None:
        threading.Thread(target=self._load, name="uner-load", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            extractor = self.load()
            self.info = self.describe(extractor)
            self.service = ExtractionService(extractor, self.limits)
        except Exception as exc:  # a UnerError says what to do; anything else is named
            self.failure = str(exc) if isinstance(exc, UnerError) else f"{type(exc).__name__}: {first_line(exc)}"
            logger.error("Error: %s", self.failure)
            if self.on_failure is not None:
                self.on_failure()
            return
        seconds = time.perf_counter() - started
        logger.info("model ready (%s, %s) in %.1f s", self.info.get("name"), self.info.get("backend"), seconds)


def _error(status: int, message: str, field: str | None = None, retry_after: int | None = None) -> JSONResponse:
    body: dict = {"status": status, "message": message}
    if field is not None:
        body["field"] = field
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _not_ready(host: ModelHost) -> JSONResponse:
    if host.failure is not None:
        return _error(503, f"the model failed to load: {host.failure}")
    return _error(503, "the model is loading", retry_after=RETRY_AFTER_S)


def _validation_error(errors: list) -> JSONResponse:
    first = errors[0]
    if first.get("type") == "json_invalid":
        return _error(422, f"expected a JSON body, got invalid JSON ({first.get('msg')})", "body")
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return _error(422, f"{where}: {first.get('msg')}", where)


#: what ``/v1/extract`` answers besides 200, for ``/docs`` and ``/openapi.json`` (the body of
#: each is ``{"error": {"status", "message", "field"?}}``)
EXTRACT_ERRORS: dict = {
    413: {"description": "The body, a text, the texts or the labels are over the server's limits (``field``)."},
    422: {"description": "Malformed JSON, a wrong type, an unknown field or a text the model cannot read."},
    503: {"description": "The model is still loading, or the queue is full: retry after ``Retry-After`` seconds."},
    504: {"description": "No answer within the server's ``--timeout``: send fewer texts."},
    500: {"description": "The engine failed (logged on the server)."},
}


def create_app(host: ModelHost, max_body_bytes: int | None = None) -> FastAPI:
    """The FastAPI application serving ``host``'s model."""
    metrics = HttpMetrics()
    body_limit = max_body_bytes or host.limits.max_chars * 4 + 64 * 1024  # UTF-8 text, JSON escapes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        host.start_loading()
        yield
        if host.service is not None:  # SIGTERM: uvicorn answered every request in flight first
            drained = await asyncio.to_thread(host.service.close, host.limits.timeout_s)
            logger.info("stopped" if drained else "stopped with the engine still busy")

    app = FastAPI(
        title="uner serve",
        description="UniversalNER entity extraction: any entity type, one batched engine for every client.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI comes from a CDN: blank offline; /docs below is plain HTML
        redoc_url=None,
    )

    @app.middleware("http")
    async def observe(request: Request, call_next) -> Response:
        started = time.perf_counter()
        path = request.url.path if request.url.path in ROUTES else "other"
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > body_limit:
            response: Response = _error(413, f"expected a body of at most {body_limit} bytes, got {length}", "body")
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # a bug: one line in the log, a plain 500 to the client
                logger.error("Error: %s %s failed: %s: %s", request.method, path, type(exc).__name__, first_line(exc))
                response = _error(500, "internal error")
        seconds = time.perf_counter() - started if path == "/v1/extract" and response.status_code == 200 else None
        metrics.record(path, response.status_code, seconds)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc.errors())

    body_schema = {"content": {"application/json": {"schema": ExtractBody.model_json_schema()}}, "required": True}

    @app.post("/v1/extract", openapi_extra={"requestBody": body_schema}, responses=EXTRACT_ERRORS)
    async def extract(request: Request) -> Response:
        """Entities of ``labels`` in each text: ``{"results": [{"entities": [...]}, ...]}``."""
        # the body is JSON whatever its Content-Type says: `curl -d` sends form-urlencoded
        try:
            body = ExtractBody.model_validate_json(await request.body())
        except ValidationError as exc:
            return _validation_error(exc.errors())
        service = host.service
        if service is None:
            return _not_ready(host)
        texts = [body.text] if body.text is not None else body.texts
        try:
            submission = service.submit(texts, body.labels, body.constrain, body.max_new_tokens)
        except LimitExceeded as exc:
            return _error(413, str(exc), exc.field)
        except InputError as exc:
            return _error(422, str(exc), getattr(exc, "field", None))
        except ServiceBusy as exc:
            return _error(503, str(exc), retry_after=RETRY_AFTER_S)
        try:
            results = await asyncio.wait_for(asyncio.wrap_future(submission.future), host.limits.timeout_s)
        except TimeoutError:
            submission.give_up()
            return _error(504, f"expected an answer within {host.limits.timeout_s:g} s, got none: send fewer texts")
        except InputError as exc:  # a text the engine could not read (a label too long for the context)
            return _error(422, str(exc))
        except Exception as exc:
            return _error(500, f"the engine failed: {first_line(exc)}")
        return JSONResponse({"results": [result_dict(extraction) for extraction in results]})

    @app.get("/health")
    async def health() -> Response:
        """200 once the model is loaded; 503 while it loads (or when it failed)."""
        if host.service is None:
            return JSONResponse(
                {"status": "failed" if host.failure else "loading"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return JSONResponse({"status": "ok"})

    @app.get("/v1/model")
    async def model() -> Response:
        """Name, backend, variant, sha256 (from the export's manifest) and the prompt template."""
        return _not_ready(host) if host.info is None else JSONResponse(host.info)

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Requests, errors, queue depth, queries, generated tokens and latency (Prometheus text)."""
        return PlainTextResponse(metrics.render(_gauges(host)), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return HTMLResponse(files("uner").joinpath("static/index.html").read_text(encoding="utf-8"))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(render_api_page(app.openapi()))

    return app


_ENGINE_METRICS = {
    "prefill_seconds": ("uner_prefill_seconds_total", "Seconds the engine spent encoding prompts."),
    "decode_seconds": ("uner_decode_seconds_total", "Seconds the engine spent in decode steps."),
    "decode_steps": ("uner_decode_steps_total", "Decode steps (one forward pass each)."),
    "decode_rows": ("uner_decode_rows_total", "Answers advanced by those steps (rows per step = rows / steps)."),
    "generated_tokens": ("uner_generated_tokens_total", "Tokens the model generated."),
}


def _gauges(host: ModelHost) -> dict[str, tuple[str, str, float]]:
    service = host.service
    counters = service.counters if service is not None else None
    totals = service.engine_totals() if service is not None else dict.fromkeys(_ENGINE_METRICS, 0)
    gauges = {
        "uner_model_ready": ("gauge", "1 once the model is loaded.", float(service is not None)),
        "uner_queue_depth": ("gauge", "Texts waiting for the engine.", service.queue_depth if service else 0),
        "uner_texts_total": ("counter", "Texts extracted.", counters.texts if counters else 0),
        "uner_queries_total": ("counter", "Queries answered (texts x labels).", counters.queries if counters else 0),
    }
    for key, (name, help_text) in _ENGINE_METRICS.items():
        gauges[name] = ("counter", help_text, totals[key])
    return gauges


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0: a free one), bound before the model loads so a busy port
    is an ``Error:`` at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(host: ModelHost, sock: socket.socket, access_log: bool = True) -> int:
    """Serve until SIGTERM/SIGINT (requests in flight are answered first): the exit status."""
    import uvicorn

    config = uvicorn.Config(
        create_app(host),
        log_config=None,  # our logging: one line per event, on stderr
        access_log=access_log,
        timeout_graceful_shutdown=int(host.limits.timeout_s) + 5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    host.on_failure = lambda: setattr(server, "should_exit", True)
    address, port = sock.getsockname()[:2]
    # printed even with --quiet: with --port 0 it is the only way to learn the port
    print(f"uner serve: listening on http://{address}:{port} (pid {os.getpid()})", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 1 if host.failure is not None else 0
