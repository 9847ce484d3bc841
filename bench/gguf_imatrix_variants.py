"""Does domain calibration matter? GGUF quantizations without an importance matrix, with one from
UniNER conversations, and with one from the same passages as plain text, for one bench run.

Both matrices are measured on the **training** splits of the shared data (never on the files the
bench scores) with the same token budget; every type is quantized three ways from one F16 file.
The printed ``uner bench`` command scores them all against the torch reference with paired
intervals, and reports bits per weight.

    .venv/bin/python bench/gguf_imatrix_variants.py --work /tmp/imatrix-variants [--types q4_k_m,iq4_xs]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.bench.reference_models import resolve_reference  # noqa: E402
from uner.toolkit.constants import gguf_file_name  # noqa: E402
from uner.toolkit.export_gguf import export_gguf  # noqa: E402
from uner.toolkit.imatrix import collect, read_imatrix, write_imatrix  # noqa: E402
from uner.toolkit.quantize import quantize_gguf  # noqa: E402

DATA = Path(os.environ.get("UNER_DATA", ROOT.parent / "shared" / "data"))
TRAIN = [
    "conll2003/train.txt",
    "mit_movie/engtrain.bio",
    "crossner_ai/train.txt",
    "crossner_literature/train.txt",
    "crossner_music/train.txt",
]
EVAL = [
    "crossner_ai/CrossNER_AI.json",
    "crossner_literature/CrossNER_literature.json",
    "crossner_music/CrossNER_music.json",
]
TYPES = "q4_k_m,iq4_xs,iq4_nl,q4_0,q3_k_m,q2_k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/imatrix-variants"))
    parser.add_argument("--source", default="uniner-smol-135m", help="HF folder or reference name")
    parser.add_argument("--types", default=TYPES)
    parser.add_argument("--tokens", type=int, default=100_000, help="calibration tokens per matrix")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    source = Path(resolve_reference(args.source))
    name = "model"
    f16 = args.work / gguf_file_name(name, "f16")
    if not f16.is_file():
        export_gguf(source, args.work, "f16", name=name)
    matrices = {}
    for mode in ("conversations", "plain"):
        path = args.work / f"imatrix-{mode}.gguf"
        if not path.is_file():
            files = [DATA / f for f in TRAIN]
            write_imatrix(path, collect(source, files, tokens=args.tokens, mode=mode, n_threads=args.threads))
        matrices[mode] = read_imatrix(path).means()
    candidates = []
    for kind in args.types.split(","):
        for label, importance in (("none", None), *matrices.items()):
            out = args.work / f"{name}.{kind.upper()}-{label}.gguf"
            if not out.is_file():
                quantize_gguf(f16, out, kind, args.threads, importance=importance)
            candidates.append(out)
    data = " ".join(f"-d {DATA / f}" for f in EVAL)
    print(
        f"uner bench -r {args.source} {' '.join(f'-c {c}' for c in candidates)} {data} --limit all "
        f"--threads {args.threads} --no-baselines -o {args.work / 'bench'}"
    )


if __name__ == "__main__":
    main()
