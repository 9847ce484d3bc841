"""The ``uner`` spaCy component: UniNER answers as ``doc.spans`` and ``doc.ents``.

>>> import spacy
>>> nlp = spacy.blank("en")
>>> nlp.add_pipe("uner", config={"model": "out/UniNER-7B-type.Q4_K_M.gguf", "labels": ["person"]})  # doctest: +SKIP
>>> nlp("Barack Obama visited Paris.").ents  # doctest: +SKIP
(Barack Obama,)

Registered through the ``spacy_factories`` entry point, so ``add_pipe("uner")`` works once the
package is installed. Every answer, overlapping ones included, lands in ``doc.spans[spans_key]``;
``doc.ents`` gets the ones that do not overlap (longest first, as :func:`spacy.util.filter_spans`
picks). An answer whose characters do not fall on token boundaries under ``alignment_mode`` is
counted (``component.misaligned``) and kept in ``doc._.uner_misaligned``, not dropped unseen.
``nlp.pipe`` reads each batch of texts through the batched engine. ``to_disk`` stores the
configuration, not the weights: the model is loaded again from ``model``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans, minibatch

from uner.atomic import write_text_atomic
from uner.checks import check_labels
from uner.entity import Entity
from uner.errors import InputError
from uner.loading import load

logger = logging.getLogger(__name__)
CONFIG_FILE = "cfg.json"
ALIGNMENT_MODES = ("strict", "contract", "expand")

if not Doc.has_extension("uner_misaligned"):
    Doc.set_extension("uner_misaligned", default=None)


class UnerComponent:
    """A pipeline component running a UniNER model (any backend :func:`uner.load` takes)."""

    def __init__(
        self,
        name: str,
        model: str,
        labels: Sequence[str],
        backend: str = "auto",
        constrain: str | None = None,
        spans_key: str = "uner",
        alignment_mode: str = "strict",
        load_options: dict | None = None,
    ) -> None:
        if alignment_mode not in ALIGNMENT_MODES:
            raise InputError(f"expected alignment_mode among {', '.join(ALIGNMENT_MODES)}, got {alignment_mode!r}")
        self.name = name
        self.labels = check_labels(labels)
        self.spans_key = spans_key
        self.alignment_mode = alignment_mode
        self.misaligned = 0
        self.model, self.backend, self.constrain = str(model), backend, constrain
        self.load_options = dict(load_options or {})
        self._extractor = self._load()

    def _load(self):
        return load(self.model, backend=self.backend, constrain=self.constrain, **self.load_options)

    @property
    def config(self) -> dict:
        """What :meth:`to_disk` stores: enough to load the same component again."""
        return {
            "model": self.model,
            "labels": list(self.labels),
            "backend": self.backend,
            "constrain": self.constrain,
            "spans_key": self.spans_key,
            "alignment_mode": self.alignment_mode,
            "load_options": dict(self.load_options),
        }

    def __call__(self, doc: Doc) -> Doc:
        return self.annotate(doc, self._extractor.extract(doc.text, self.labels))

    def pipe(self, docs: Iterable[Doc], batch_size: int = 32) -> Iterator[Doc]:
        """Each batch of documents read together by the batched engine."""
        for batch in minibatch(docs, size=batch_size):
            for doc, entities in zip(batch, self._extractor.extract_batch([doc.text for doc in batch], self.labels)):
                yield self.annotate(doc, entities)

    def annotate(self, doc: Doc, entities: Sequence[Entity]) -> Doc:
        """Set ``doc.spans[spans_key]`` to every entity, ``doc.ents`` to the non-overlapping ones."""
        spans: list[Span] = []
        misaligned: list[dict] = []
        for entity in entities:
            span = doc.char_span(entity.start, entity.end, label=entity.label, alignment_mode=self.alignment_mode)
            if span is None:
                misaligned.append(entity.to_dict())
            else:
                spans.append(span)
        if misaligned:
            self.misaligned += len(misaligned)
            logger.warning(
                "%d answers do not fall on token boundaries (alignment_mode %r): see doc._.uner_misaligned",
                len(misaligned),
                self.alignment_mode,
            )
        doc.spans[self.spans_key] = spans
        doc.ents = filter_spans([*spans, *doc.ents])
        doc._.uner_misaligned = misaligned
        return doc

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path / CONFIG_FILE, json.dumps(self.config, indent=2) + "\n")

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> UnerComponent:
        return self._restore(json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8")))

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return json.dumps(self.config).encode("utf-8")

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> UnerComponent:
        return self._restore(json.loads(data.decode("utf-8")))

    def _restore(self, config: dict) -> UnerComponent:
        self.labels = check_labels(config["labels"])
        self.spans_key = config["spans_key"]
        self.alignment_mode = config["alignment_mode"]
        loaded = (self.model, self.backend, self.constrain, self.load_options)
        wanted = (config["model"], config["backend"], config["constrain"], config.get("load_options", {}))
        if wanted != loaded:  # another model: load it (the same one stays loaded)
            self._extractor.close()
            self.model, self.backend, self.constrain, self.load_options = wanted
            self._extractor = self._load()
        return self


@Language.factory(
    "uner",
    default_config={
        "backend": "auto",
        "constrain": None,
        "spans_key": "uner",
        "alignment_mode": "strict",
        "load_options": {},
    },
)
def make_uner(
    nlp: Language,
    name: str,
    model: str,
    labels: list[str],
    backend: str,
    constrain: str | None,
    spans_key: str,
    alignment_mode: str,
    load_options: dict,
) -> UnerComponent:
    """The ``uner`` factory: ``model`` (a GGUF file, ONNX folder, HF folder or org/name:variant)
    and ``labels`` are required; ``load_options`` go to :func:`uner.load` (``n_threads``...)."""
    return UnerComponent(name, model, labels, backend, constrain, spans_key, alignment_mode, load_options)
