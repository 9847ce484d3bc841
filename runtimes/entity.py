"""The result type every backend returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Entity:
    """One mention of ``label`` at ``text[start:end]`` (character offsets, end exclusive)."""

    start: int
    end: int
    label: str
    text: str

    def to_dict(self) -> dict:
        return {"label": self.label, "text": self.text, "start": self.start, "end": self.end}

    def __repr__(self) -> str:
        return f"Entity(label={self.label!r}, text={self.text!r}, start={self.start}, end={self.end})"
