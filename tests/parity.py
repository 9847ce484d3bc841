"""Greedy token parity between two extractors: the check the parity tests assert on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Mismatch:
    text: str
    label: str
    reference: list[int]
    candidate: list[int]


def greedy_mismatches(reference, candidate, queries) -> list[Mismatch]:
    """Queries whose prompt ids or greedy generated ids differ between the two extractors.

    Token parity is checked on every token: both run without the loop guard, which would end
    a prose answer (a base model's) at its first character and hide what follows."""
    mismatches = []
    reference.loop_guard = candidate.loop_guard = False
    for text, label in queries:
        ref_prompt, cand_prompt = reference.prompt_ids(text, label), candidate.prompt_ids(text, label)
        ref_ids = reference.generate(ref_prompt)
        cand_ids = candidate.generate(cand_prompt) if cand_prompt == ref_prompt else [-1]
        if ref_ids != cand_ids:
            mismatches.append(Mismatch(text, label, ref_ids, cand_ids))
    return mismatches
