"""Streaming a corpus through an extractor into JSON lines, resumably.

Each finished document is one complete, flushed line of the output; a run that is stopped
and started again skips the ids already there (a last line cut by a crash is dropped first).
A document that cannot be read (no text, a lone surrogate, an id that is not a string or an
integer, a line that is not JSON) is reported in one warning line, counted and skipped; the
others are written.

Beside the output, ``<output>.meta.json`` records the labels and the model the output was
started with (``{"format": 1, "labels": [...], "model": "..."}``, written atomically before
the first line). Adding to an output with other labels or another model is refused, so one
file never mixes the answers to different questions; the output's own lines stay
``{"id", "entities"}`` only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from uner.atomic import write_text_atomic
from uner.base import GenerativeExtractor
from uner.errors import InputError
from uner.inputs import Document, make_document

logger = logging.getLogger(__name__)

META_FORMAT = 1


@dataclass
class CorpusRun:
    """What a run did: ``written`` new lines, ``skipped`` ids already there, ``rejected``
    documents that could not be read (each reported in a warning)."""

    written: int = 0
    skipped: int = 0
    rejected: int = 0


def meta_path(output: Path) -> Path:
    """The sidecar recording what ``output`` was started with: ``out.jsonl.meta.json``."""
    return output.with_name(output.name + ".meta.json")


def _check_regular(output: Path) -> None:
    # a folder or a device (/dev/full reads forever) is never an output we can resume
    if output.exists() and not output.is_file():
        kind = "folder" if output.is_dir() else "special file"
        raise InputError(f"expected --output to be a file, got {output}, which is a {kind}")
    parent = next((p for p in output.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"expected --output in a folder, got {output}, but {parent} is a file")


def finished_ids(output: Path) -> set[str]:
    """Ids already in ``output``; a trailing partial line (interrupted write) is cut off."""
    _check_regular(output)
    if not output.exists():
        return set()
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        logger.warning("dropping an unfinished last line of %s", output)
        with output.open("r+b") as handle:
            handle.truncate(len(complete))
    ids = set()
    for number, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), start=1):
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(
                f"expected JSON lines with an 'id' in {output} (line {number}); it is not an output of uner extract"
            ) from exc
    return ids


def _has_results(output: Path) -> bool:
    """Whether ``output`` holds at least one complete line (a new or emptied file does not)."""
    if not output.is_file():
        return False
    with output.open("rb") as handle:
        return handle.readline().endswith(b"\n")


def _read_meta(output: Path) -> dict | None:
    path = meta_path(output)
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"expected JSON in {path}, got: {exc}; remove it and {output} to start over") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise InputError(f"expected an object with 'labels' in {path}; remove it and {output} to start over")
    return meta


def check_resume(output: Path, labels: Sequence[str], model: str | None = None) -> None:
    """Refuse to add to ``output`` when it was started with other labels (in any order) or
    another ``model`` (compared when both are known); a new or empty output is always fine.

    Reads only, so the CLI calls it before loading the model."""
    _check_regular(output)
    if not _has_results(output):
        return
    meta = _read_meta(output)
    if meta is None:
        return  # an output of an older uner: adopted with a warning when the run starts
    differs = []
    if set(meta["labels"]) != set(labels):
        differs.append(f"labels ({', '.join(map(str, meta['labels']))} there, {', '.join(labels)} now)")
    if model is not None and meta.get("model") is not None and meta["model"] != model:
        differs.append(f"model ({meta['model']} there, {model} now)")
    if differs:
        raise InputError(
            f"expected the labels and model {output} was started with, got other {' and '.join(differs)}: "
            f"write to a new --output, or remove {output} and {meta_path(output).name} to start over"
        )


def _write_meta(output: Path, labels: Sequence[str], model: str | None) -> None:
    """``<output>.meta.json`` written to a temporary name beside it and renamed, so it is
    either the old record or the whole new one."""
    record = {"format": META_FORMAT, "labels": list(labels), "model": model}
    write_text_atomic(meta_path(output), json.dumps(record, ensure_ascii=False, indent=2) + "\n")


def logs_beside(bar) -> contextlib.AbstractContextManager:
    """Log lines printed above the progress bar rather than through it."""
    if bar is None:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _checked(items: Iterable[Document | tuple[str, str]]) -> Iterator[Document]:
    """Documents as given, ``(id, text)`` tuples checked like lines of a file."""
    for number, item in enumerate(items, start=1):
        yield item if isinstance(item, Document) else make_document(number, *item)


def extract_corpus(
    extractor: GenerativeExtractor,
    documents: Iterable[Document | tuple[str, str]],
    labels: Sequence[str],
    output: Path,
    *,
    model: str | None = None,
    include_raw: bool = False,
    total: int | None = None,
    progress: bool = True,
) -> CorpusRun:
    """Extract ``labels`` from every document (``(id, text)`` or a :class:`~uner.inputs.Document`)
    into ``output`` (JSON lines: ``id``, ``entities`` with character offsets, and with
    ``include_raw`` the raw answers), resuming where an earlier run stopped.

    ``model`` names the model in ``<output>.meta.json``; a resume with other labels or another
    model raises :class:`InputError` (see :func:`check_resume`). Documents that cannot be read
    are skipped, each with a warning, and counted in ``rejected``.

    >>> with load("uniner-smol.Q4_K_M.gguf") as ner:  # doctest: +SKIP
    ...     extract_corpus(ner, [("a", "Barack Obama visited Paris.")], ["person"], Path("out.jsonl"))
    CorpusRun(written=1, skipped=0, rejected=0)
    """
    check_resume(output, labels, model)
    output.parent.mkdir(parents=True, exist_ok=True)
    resumed = _has_results(output)
    done = finished_ids(output)
    if not resumed or _read_meta(output) is None:
        if resumed:
            logger.warning("%s records no labels or model (written by an older uner?): taking them to be these", output)
        _write_meta(output, labels, model)
    run = CorpusRun()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="doc", desc="extract", dynamic_ncols=True)
    waiting: deque[str] = deque()

    def unfinished() -> Iterator[str]:
        # checked here, one by one: run_many decodes several texts at once, so an error raised
        # inside it could not be tied to one document (nor the others kept)
        for document in _checked(documents):
            if document.problem is not None:
                logger.warning("skipping %s: %s", document.describe(), document.problem)
                run.rejected += 1
            elif document.id in done:
                run.skipped += 1
            else:
                waiting.append(document.id)
                yield document.text
                continue
            if bar is not None:
                bar.update()

    try:
        with logs_beside(bar), output.open("a", encoding="utf-8") as sink:
            # run_many decodes several documents at once and yields them in input order
            for extraction in extractor.run_many(unfinished(), labels):
                record = {"id": waiting.popleft(), **extraction.to_dict(include_raw)}
                del record["text"]
                try:
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                    sink.flush()
                except OSError as exc:
                    if exc.filename is not None or exc.errno is None:
                        raise
                    # a full disk does not say which file: the one being written
                    raise OSError(exc.errno, exc.strerror, str(output)) from exc
                run.written += 1
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    return run
