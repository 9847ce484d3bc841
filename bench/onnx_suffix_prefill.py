"""What would one batched pass over a text's type suffixes save on ONNX Runtime?

The engine's ONNX pool encodes a text's prefix once, then each type's suffix in a call of its
own (GroupQueryAttention refuses several new tokens per row after a past when batch > 1). The
way around it is one batch-1 call over all suffixes laid end to end after the prefix, with a
block-diagonal ``attention_bias`` and explicit ``position_ids`` wired into every GQA node, and
the present KV split per row afterwards. Before patching graphs, this times the bound on the
gain on the same model and threads: per text, the suffix calls as the pool runs them against
one call over the concatenated suffixes (unmasked: the same matmuls, attention over slightly
more keys), after the same prefix KV.

    python -m uner.bench.onnx_suffix_prefill ONNX_FOLDER -d ../shared/data/crossner_ai/CrossNER_AI.json \\
        --limit 120 --threads 2 -o bench/reports/NAME/onnx_suffix_prefill.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np

from uner import load
from uner.atomic import write_text_atomic
from uner.bench.workload import sample_arguments, sample_texts
from uner.engine import Job, _Admission


def _seconds(call, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
    return best


def time_text(model, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], repeats: int) -> dict:
    """Best-of-``repeats`` seconds of the prefix, the per-suffix calls and one concatenated call."""
    start = len(prefix)

    def encode_prefix():
        return model.forward(np.array([prefix]), np.ones((1, start)), np.arange(start)[None], model.empty_past())[1]

    past = encode_prefix()

    def per_suffix():
        for suffix in suffixes:
            total = start + len(suffix)
            model.forward(np.array([suffix]), np.ones((1, total)), np.arange(start, total)[None], past)

    joined = [token for suffix in suffixes for token in suffix]
    total = start + len(joined)

    def one_call():
        model.forward(np.array([joined]), np.ones((1, total)), np.arange(start, total)[None], past)

    return {
        "prefix_tokens": start,
        "suffixes": len(suffixes),
        "suffix_tokens": len(joined),
        "prefix_seconds": _seconds(encode_prefix, repeats),
        "per_suffix_seconds": _seconds(per_suffix, repeats),
        "one_call_seconds": _seconds(one_call, repeats),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = sample_arguments(__doc__.split("\n\n")[0], "an ONNX folder written by uner-export onnx")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    args = parser.parse_args(argv)
    texts = sample_texts(args.data, args.limit)
    with load(args.model, n_threads=args.threads) as model:
        rows = []
        for text, labels in texts:
            admission = _Admission(0, Job([model.prompt_ids(text, label) for label in labels]), ())
            rows.append(time_text(model, admission.prefix, admission.suffixes, args.repeats))
    sums = {key: sum(row[key] for row in rows) for key in ("prefix_seconds", "per_suffix_seconds", "one_call_seconds")}
    results = {"model": args.model, "texts": len(rows), "threads": args.threads, "totals": sums, "per_text": rows}
    write_text_atomic(args.out, json.dumps(results, indent=1) + "\n")
    print(
        f"{len(rows)} texts, {sum(r['suffixes'] for r in rows)} suffixes: prefix {sums['prefix_seconds']:.2f} s, "
        f"suffixes one call each {sums['per_suffix_seconds']:.2f} s, all in one call {sums['one_call_seconds']:.2f} s "
        f"(saves at most {sums['per_suffix_seconds'] - sums['one_call_seconds']:.2f} s)"
    )


if __name__ == "__main__":
    main()
