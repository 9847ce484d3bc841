"""Short training ablations for uniner-smol-135m, each scored on the shared CrossNER eval files.

Every ablation trains on the same token budget (``--tokens``, ~15 minutes here) from the same
stream, with CrossNER music's train and dev splits **left out**, so the music column measures a
domain and types the run never saw (the generalisation UniNER exists for), and AI / literature
columns one it trained on. Each trained model is merged into an fp16 HF folder and answers
``--limit`` queries per eval file (the bench's deterministic sample of whole texts) through the
torch backend's batched engine; F1 comes with a 95 % bootstrap interval over texts.

    .venv/bin/python bench/ablate_uniner_smol.py --out bench/uniner_smol/ablations [NAME...]

Results append to ``OUT/ablations.jsonl`` (one line per ablation, so runs over several sessions
add up) and ``OUT/ablations.md`` is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.bench.runner import predict, sample_queries  # noqa: E402
from uner.bench.statistics import bootstrap  # noqa: E402
from uner.eval_data import read_queries  # noqa: E402
from uner.metrics import score_normalized  # noqa: E402
from uner.parsing import parse_normalized  # noqa: E402

#: the shared data folder ($UNER_DATA)
DATA = Path(os.environ.get("UNER_DATA", ROOT.parent / "shared" / "data"))
EVAL_FILES = [
    DATA / "crossner_ai" / "CrossNER_AI.json",
    DATA / "crossner_literature" / "CrossNER_literature.json",
    DATA / "crossner_music" / "CrossNER_music.json",
]
HELD_OUT = "crossner_music"
#: name -> trainer options on top of the shared ones; "base" is the point the others vary
ABLATIONS: dict[str, list[str]] = {
    "v1-recipe": ["--rank", "16", "--lr", "2e-4", "--negatives", "all", "--no-vary-names", "--no-vary-case"],
    "base": [],
    "full-ft": ["--tune", "full", "--lr", "1e-4"],
    "lora-r16": ["--rank", "16"],
    "neg-all": ["--negatives", "all"],
    "neg-1": ["--negatives", "1"],
    "no-variation": ["--no-vary-names", "--no-vary-case"],
    "case-only": ["--no-vary-names"],
    "names-only": ["--no-vary-case"],
    "lr-1e-3": ["--lr", "1e-3"],
    "full-ft-3e-5": ["--tune", "full", "--lr", "3e-5"],
}


def train(name: str, out: Path, tokens: int, minutes: float) -> dict:
    folder = out / name
    command = [sys.executable, str(ROOT / "bench" / "train_uniner_smol.py"), "--out", str(folder)]
    command += ["--tokens", str(tokens), "--minutes", str(minutes), "--exclude", HELD_OUT, *ABLATIONS[name]]
    subprocess.run(command, check=True)
    return json.loads((folder / "metrics.json").read_text())


def merged(name: str, out: Path) -> Path:
    """The ablation's model as an fp16 HF folder (base + adapter, or base + delta)."""
    from uner.bench.reference_models import apply_delta
    from uner.bench.train_uniner_smol import _embedded_base
    from uner.toolkit.adapter import merge_adapter

    folder, dest, base = out / name, out / name / "merged", _embedded_base()
    shutil.rmtree(dest, ignore_errors=True)
    if (folder / "adapter").is_dir():
        return merge_adapter(base, folder / "adapter", dest)
    return apply_delta(base, folder / "delta.safetensors", dest)


def evaluate(model: Path, limit: int, threads: int) -> dict:
    from uner.torch_backend import TorchExtractor

    scores, by_file = {}, {}
    with TorchExtractor(model, n_threads=threads) as extractor:
        for file in EVAL_FILES:
            by_file[file.stem] = predict(extractor, sample_queries(read_queries(file), limit), file.stem)
    intervals = bootstrap([p for predictions in by_file.values() for p in predictions])
    for name, predictions in by_file.items():
        predicted = [parse_normalized(p.raw) for p in predictions]
        score = score_normalized(predicted, [parse_normalized(p.gold) for p in predictions])
        scores[name] = {
            "queries": len(predictions),
            "f1": round(100 * score.f1, 2),
            "f1_ci95": [round(bound, 2) for bound in intervals[name].f1_ci95],
            "answered_empty": round(100 * sum(not p for p in predicted) / len(predicted), 1),
        }
    scores["average"] = {"f1": round(sum(s["f1"] for s in scores.values()) / len(EVAL_FILES), 2)}
    return scores


def write_table(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "ablations.jsonl").read_text().splitlines() if line.strip()]
    lines = [
        "`base`: LoRA r 64 (alpha 128, dropout 0.05) on every linear layer, AdamW lr 3e-4, cosine with 5 % "
        "warm-up, 3 absent types asked per sentence, type names and text case varied. Every row trains on the "
        "first 150k tokens of its stream (the same sentences in the same order; what each asks differs), with "
        "CrossNER music's train and dev splits left out (its column is a domain and types the run never saw). "
        "F1 on the official eval files, `--limit` queries each (the bench's sample of whole texts, the same for "
        "every row); 95 % intervals: bootstrap over texts, per row (not paired).",
        "",
        "| ablation | options | train min | tokens | AI F1 [95 % CI] | literature F1 | music F1 (held out) | mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for file in EVAL_FILES:
            s = row["scores"][file.stem]
            cells.append(f"{s['f1']:.1f} [{s['f1_ci95'][0]:.1f}, {s['f1_ci95'][1]:.1f}] (n={s['queries']})")
        options = " ".join(ABLATIONS.get(row["name"], [])) or "–"
        lines.append(
            f"| {row['name']} | `{options}` | {row['train']['train_minutes']} | {row['train']['tokens_planned']:,} | "
            + " | ".join(cells)
            + f" | {row['scores']['average']['f1']:.1f} |"
        )
    (out / "ablations.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"ablations to run (default: all of {', '.join(ABLATIONS)})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "uniner_smol" / "ablations")
    parser.add_argument("--tokens", type=int, default=180_000)
    parser.add_argument("--minutes", type=float, default=20, help="hard stop per ablation's training")
    parser.add_argument("--limit", type=int, default=500, help="queries per eval file")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(ABLATIONS):
        if name not in ABLATIONS:
            sys.exit(f"Error: unknown ablation {name!r}; expected one of {', '.join(ABLATIONS)}")
        started = time.time()
        summary = train(name, args.out, args.tokens, args.minutes)
        scores = evaluate(merged(name, args.out), args.limit, args.threads)
        row = {"name": name, "train": summary, "scores": scores, "minutes": round((time.time() - started) / 60, 1)}
        with (args.out / "ablations.jsonl").open("a") as log:
            log.write(json.dumps(row) + "\n")
        write_table(args.out)
        print(json.dumps({"name": name, "scores": scores}), flush=True)


if __name__ == "__main__":
    main()
