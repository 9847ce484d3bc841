"""Calibration text and the pass that measures a model's layer inputs on it.

Quantizers that weigh rounding by what a layer actually sees (llama.cpp's importance matrix,
GPTQ's Hessians) need that layer's inputs on representative text. Here that text is what the
model will answer: UniNER conversations (a passage, then every entity type of its file asked in
turn, each answered with its gold mentions, absent types with ``[]``) built from **training**
files, never the files the bench scores. ``plain`` mode (the passages alone) is there to
measure whether the prompts matter.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from uner.errors import InputError
from uner.eval_data import Query, read_queries
from uner.prompt import encode_conversation

MODES = ("conversations", "plain")
DEFAULT_TOKENS = 50_000  # calibration tokens: llama-imatrix's usual ~100 chunks of 512

#: name -> the module whose input is measured, chosen from the loaded torch model
Selector = Callable[[object], Mapping[str, object]]
#: called with (name, the module's input as a [tokens, features] float32 tensor) on every forward
Accumulator = Callable[[str, object], None]


def _texts(files: Sequence[Path]) -> list[list[list[Query]]]:
    """Per file, its texts as lists of queries (every type asked of the text)."""
    per_file = []
    for path in files:
        by_text: dict[str, list[Query]] = {}
        for query in read_queries(path):
            by_text.setdefault(query.text, []).append(query)
        per_file.append(list(by_text.values()))
    return per_file


def calibration_sequences(
    files: Sequence[Path],
    encode,
    eos_id: int,
    bos_id: int | None,
    tokens: int,
    mode: str = "conversations",
    seed: int = 0,
) -> Iterator[list[int]]:
    """Token sequences, taken in turn from each file's shuffled texts, until ``tokens`` are given."""
    if mode not in MODES:
        raise InputError(f"expected a calibration mode among {', '.join(MODES)}, got {mode!r}")
    rng = random.Random(seed)
    queues = []
    for texts in _texts(files):
        rng.shuffle(texts)
        queues.append(iter(texts))
    given = 0
    while queues and given < tokens:
        for queue in list(queues):
            group = next(queue, None)
            if group is None:
                queues.remove(queue)
                continue
            text = group[0].text
            if mode == "plain":
                ids = ([bos_id] if bos_id is not None else []) + list(encode(text))
            else:
                answers = [(q.label, json.dumps(q.gold_mentions, ensure_ascii=False)) for q in group]
                ids, _ = encode_conversation(text, answers, encode, eos_id, bos_id)
            given += len(ids)
            yield ids
            if given >= tokens:
                return


def measure_inputs(
    model: Path,
    files: Sequence[Path],
    select: Selector,
    accumulate: Accumulator,
    *,
    tokens: int = DEFAULT_TOKENS,
    mode: str = "conversations",
    dtype: str = "float32",
    n_threads: int | None = None,
    progress: bool = True,
    label: str = "calibration",
) -> tuple[int, int]:
    """Run the HF model at ``model`` over calibration sequences from ``files``, handing each
    selected module's input to ``accumulate``; returns (sequences, tokens) run."""
    import torch

    from uner.torch_backend import TorchExtractor

    chunks = seen = 0
    with TorchExtractor(model, dtype=dtype, n_threads=n_threads) as extractor, extractor.threads():
        hooks = [
            module.register_forward_pre_hook(_hook(name, accumulate))
            for name, module in select(extractor.model).items()
        ]
        sequences = calibration_sequences(files, extractor.encode, extractor.eos_id, extractor.bos_id, tokens, mode)
        bar = _bar(tokens, progress, label)
        try:
            with torch.inference_mode():
                for ids in sequences:
                    ids = ids[: extractor.context_length]
                    extractor.model(torch.tensor([ids], device=extractor.device))
                    chunks, seen = chunks + 1, seen + len(ids)
                    if bar:
                        bar.update(len(ids))
        finally:
            for hook in hooks:
                hook.remove()
            if bar:
                bar.close()
    if not chunks:
        raise InputError("expected calibration texts in the data files, got none")
    return chunks, seen


def _hook(name: str, accumulate: Accumulator):
    def hook(_module, inputs):
        accumulate(name, inputs[0].detach().float().reshape(-1, inputs[0].shape[-1]))

    return hook


def _bar(total: int, progress: bool, label: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="tok", desc=label, leave=False)
