"""How far each ONNX precision drifts from torch, and how fast it runs, side by side in one run.

Exports the embedded SmolLM2-135M-Instruct (or --source) at fp32, fp16, int8 and int4 (plus
int4 block-size/accuracy-level variants), runs the same CrossNER queries through torch and each
variant, and reports per variant: size on disk, greedy agreement with torch (identical generated
ids; and the mean share of the torch answer reproduced before the first differing token),
generated tokens/s and its ratio to torch measured in the same run. ``uner bench`` (issue 4)
adds F1 once a UniNER-trained small model exists; SmolLM2 itself answers in prose (F1 0).

    .venv/bin/python bench/onnx_variants.py --work /tmp/uner-onnx-bench [--per-domain 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.eval_data import read_queries  # noqa: E402
from uner.onnx_backend import OnnxExtractor  # noqa: E402
from uner.toolkit.embedded import materialize_smollm2  # noqa: E402
from uner.toolkit.export_onnx import export_onnx  # noqa: E402
from uner.torch_backend import TorchExtractor  # noqa: E402

VARIANTS = {  # name -> export_onnx arguments
    "fp32": {"precision": "fp32"},
    "fp16": {"precision": "fp16"},
    "int8": {"precision": "int8"},
    "int8-fp32acc": {"precision": "int8", "accuracy_level": 1},
    "int4-b32": {"precision": "int4"},
    "int4-b16": {"precision": "int4", "block_size": 16},
    "int4-b64": {"precision": "int4", "block_size": 64},
    "int4-b128": {"precision": "int4", "block_size": 128},
    "int4-b32-fp32acc": {"precision": "int4", "accuracy_level": 1},
}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("model.onnx"))


def run_queries(extractor, prompts: list[list[int]]) -> tuple[list[list[int]], float]:
    outputs, started = [], time.perf_counter()
    for ids in prompts:
        outputs.append(extractor.generate(ids))
    return outputs, time.perf_counter() - started


def shared_prefix(reference: list[int], candidate: list[int]) -> float:
    if not reference:
        return float(candidate == reference)
    same = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        same += 1
    return same / len(reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/uner-onnx-bench"))
    parser.add_argument("--source", type=Path, help="HF folder (default: the embedded SmolLM2)")
    parser.add_argument("--per-domain", type=int, default=10, help="CrossNER queries per domain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    source = args.source or materialize_smollm2(args.work / "SmolLM2-135M-Instruct")
    data = ROOT.parent / "shared" / "data"
    files = [
        "crossner_ai/CrossNER_AI.json",
        "crossner_literature/CrossNER_literature.json",
        "crossner_music/CrossNER_music.json",
    ]
    queries = [(q.text, q.label) for f in files for q in read_queries(data / f)[: args.per_domain]]
    with TorchExtractor(source, n_threads=args.threads) as reference:
        prompts = [reference.prompt_ids(text, label) for text, label in queries]
        expected, torch_seconds = run_queries(reference, prompts)
    torch_tokens = sum(map(len, expected))
    rows = [
        {
            "variant": "torch fp32",
            "size_mb": None,
            "identical": 1.0,
            "prefix": 1.0,
            "tok_s": torch_tokens / torch_seconds,
            "x_torch": 1.0,
        }
    ]
    for name in args.variants.split(","):
        folder = args.work / name
        if not (folder / "manifest.json").is_file():
            export_onnx(source, folder, force=True, progress=False, **VARIANTS[name])
        with OnnxExtractor(folder, n_threads=args.threads) as candidate:
            got, seconds = run_queries(candidate, prompts)
        tokens = sum(map(len, got))
        rows.append(
            {
                "variant": name,
                "size_mb": round(folder_bytes(folder) / 1e6, 1),
                "identical": sum(a == b for a, b in zip(expected, got)) / len(prompts),
                "prefix": sum(shared_prefix(a, b) for a, b in zip(expected, got)) / len(prompts),
                "tok_s": tokens / seconds,
                "x_torch": (tokens / seconds) / (torch_tokens / torch_seconds),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"{len(prompts)} CrossNER queries, {args.threads} threads, model {source.name}\n")
    print("| variant | size MB | identical to torch | torch answer reproduced | gen tok/s | x torch |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        size = "-" if row["size_mb"] is None else f"{row['size_mb']:.1f}"
        print(
            f"| {row['variant']} | {size} | {row['identical']:.0%} | {row['prefix']:.0%} | {row['tok_s']:.1f} | "
            f"{row['x_torch']:.2f} |"
        )


if __name__ == "__main__":
    main()
