"""The one extraction interface, and the query loop every backend shares.

A backend only supplies tokenization and greedy generation; the prompt, the parser and the
grounding live in :mod:`runtimes.prompt`, :mod:`runtimes.parsing` and :mod:`runtimes.grounding`
and are applied here, identically for all backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from runtimes.entity import Entity
from runtimes.errors import InputError
from runtimes.grounding import ground
from runtimes.parsing import parse_answer
from runtimes.prompt import encode_prompt

DEFAULT_MAX_NEW_TOKENS = 256


@runtime_checkable
class Extractor(Protocol):
    """What :func:`runtimes.load` returns, whatever the backend."""

    name: str

    def extract(self, text: str, labels: Sequence[str]) -> list[Entity]: ...

    def extract_batch(self, texts: Sequence[str], labels: Sequence[str]) -> list[list[Entity]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Extractor: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class Extraction:
    """Everything one text produced: entities, the raw answers and what could not be grounded."""

    text: str
    entities: list[Entity] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)
    ungrounded: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self, include_raw: bool = False) -> dict:
        out: dict = {"text": self.text, "entities": [e.to_dict() for e in self.entities]}
        if include_raw:
            out["raw"] = dict(self.raw)
            out["ungrounded"] = {label: list(answers) for label, answers in self.ungrounded.items()}
        return out


def check_labels(labels: Iterable[str] | str) -> list[str]:
    """Labels stripped and de-duplicated in order; an empty list is an input error."""
    if isinstance(labels, str):
        labels = [labels]
    cleaned = list(dict.fromkeys(label.strip() for label in labels if label and label.strip()))
    if not cleaned:
        raise InputError("expected at least one entity label, got none")
    return cleaned


def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InputError(f"expected the text as a str, got {type(text).__name__}")
    return text


class GenerativeExtractor(ABC):
    """Shared implementation of :class:`Extractor` for UniNER-style generative models.

    Subclasses provide ``name``, ``eos_id``, ``bos_id`` (``None`` when the tokenizer adds no
    BOS), ``context_length`` and the four methods below.
    """

    name: str
    eos_id: int
    bos_id: int | None
    context_length: int
    #: seconds the last :meth:`generate` spent on the prompt (up to the first new token's
    #: logits); the bench splits prompt and generation throughput with it.
    last_prefill_seconds: float | None = None

    def __init__(self, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        if max_new_tokens < 1:
            raise InputError(f"expected max_new_tokens >= 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of plain text, without special tokens."""

    @abstractmethod
    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        """Greedy continuation of ``prompt_ids``: at most ``max_new_tokens``, EOS not included."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids."""

    def _release(self) -> None:
        """Free the backend's resources (model, context)."""

    def prompt_ids(self, text: str, label: str) -> list[int]:
        """The UniNER prompt for one (text, label) query, as token ids."""
        ids = encode_prompt(text, label, self.encode, self.eos_id, self.bos_id)
        if len(ids) + self.max_new_tokens > self.context_length:
            raise InputError(
                f"expected a prompt of at most {self.context_length - self.max_new_tokens} tokens "
                f"(context {self.context_length} minus {self.max_new_tokens} new tokens), "
                f"got {len(ids)}: shorten the text"
            )
        return ids

    def answer(self, text: str, label: str) -> str:
        """The model's raw answer to "What describes ``label`` in the text?"."""
        return self.decode(self.generate(self.prompt_ids(text, label))).strip()

    def run(self, text: str, labels: Sequence[str]) -> Extraction:
        """Entities, raw answers and ungrounded answers for one text."""
        text, labels = check_text(text), check_labels(labels)
        result = Extraction(text=text)
        for label in labels:
            raw = self.answer(text, label)
            grounded = ground(text, label, parse_answer(raw))
            result.raw[label] = raw
            result.entities.extend(grounded.entities)
            if grounded.ungrounded:
                result.ungrounded[label] = grounded.ungrounded
        result.entities.sort()
        return result

    def extract(self, text: str, labels: Sequence[str]) -> list[Entity]:
        """Entities of ``labels`` in ``text``, sorted by offset.

        >>> ner.extract("Barack Obama visited Paris.", ["person", "location"])  # doctest: +SKIP
        [Entity(label='person', text='Barack Obama', start=0, end=12), ...]
        """
        return self.run(text, labels).entities

    def extract_batch(self, texts: Sequence[str], labels: Sequence[str]) -> list[list[Entity]]:
        """:meth:`extract` over several texts with the same labels."""
        labels = check_labels(labels)
        return [self.extract(text, labels) for text in texts]

    def close(self) -> None:
        self._release()

    def __enter__(self) -> GenerativeExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
