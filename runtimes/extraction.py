"""A text's extraction, and how one is assembled as its windows finish (in any order)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from uner.entity import Entity
from uner.grounding import ground
from uner.parsing import parse_answer
from uner.windows import merge_entities, shift


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


class TextResult:
    """A text's extraction as its windows finish (in any order)."""

    def __init__(self, extraction: Extraction, windows: int, labels: Sequence[str]) -> None:
        self.extraction = extraction
        self.pending = windows
        self.labels = list(labels)
        self.raws: dict[int, list[str]] = {}
        self.found: list[Entity] = []

    @property
    def complete(self) -> bool:
        return self.pending == 0

    def add(self, window: int, offset: int, piece: str, raws: Sequence[str]) -> None:
        self.raws[window] = list(raws)
        for label, raw in zip(self.labels, raws):
            grounded = ground(piece, label, parse_answer(raw))
            self.found += [shift(entity, offset) for entity in grounded.entities]
            if grounded.ungrounded:
                self.extraction.ungrounded.setdefault(label, []).extend(grounded.ungrounded)
        self.pending -= 1

    def finish(self) -> Extraction:
        per_label = zip(*(self.raws[window] for window in sorted(self.raws)))
        self.extraction.raw = {label: "\n".join(raws) for label, raws in zip(self.labels, per_label)}
        self.extraction.entities = merge_entities(self.found)
        return self.extraction


class WindowBar:
    """A progress bar over the windows of long texts, opened once a text needs several."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar = None
        self._pending = 0

    def expect(self, windows: int) -> None:
        self._pending += windows
        if self._bar is None and self._enabled and windows > 1:
            from tqdm import tqdm

            self._bar = tqdm(total=self._pending, unit="window", desc="long text", leave=False, dynamic_ncols=True)
        elif self._bar is not None:
            self._bar.total = self._bar.n + self._pending
            self._bar.refresh()

    def done(self) -> None:
        self._pending -= 1
        if self._bar is not None:
            self._bar.update()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
