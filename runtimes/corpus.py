"""Streaming a corpus through an extractor into JSON lines, resumably.

Each finished document is one complete, flushed line of the output; a run that is stopped
and started again skips the ids already there (a last line cut by a crash is dropped first).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtimes.base import GenerativeExtractor
from runtimes.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class CorpusRun:
    written: int = 0
    skipped: int = 0


def finished_ids(output: Path) -> set[str]:
    """Ids already in ``output``; a trailing partial line (interrupted write) is cut off."""
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
            raise InputError(f"expected JSON lines with an 'id' in {output} (line {number}); it is not an output of uner extract") from exc
    return ids


def extract_corpus(
    extractor: GenerativeExtractor,
    documents: Iterable[tuple[str, str]],
    labels: Sequence[str],
    output: Path,
    *,
    include_raw: bool = False,
    total: int | None = None,
    progress: bool = True,
) -> CorpusRun:
    """Extract ``labels`` from every ``(id, text)`` document into ``output`` (JSON lines:
    ``id``, ``entities`` with character offsets, and with ``include_raw`` the raw answers)."""
    done = finished_ids(output)
    run = CorpusRun()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="doc", desc="extract", dynamic_ncols=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    waiting: deque[str] = deque()

    def unfinished() -> Iterator[str]:
        for doc_id, text in documents:
            if doc_id in done:
                run.skipped += 1
                if bar is not None:
                    bar.update()
                continue
            waiting.append(doc_id)
            yield text

    try:
        with output.open("a", encoding="utf-8") as sink:
            # run_many decodes several documents at once and yields them in input order
            for extraction in extractor.run_many(unfinished(), labels):
                record = {"id": waiting.popleft(), **extraction.to_dict(include_raw)}
                del record["text"]
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
                run.written += 1
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    return run
