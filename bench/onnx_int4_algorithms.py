"""ONNX int4 beyond symmetric round-to-nearest: build one int4 folder per algorithm, then bench them.

For a model small enough to quantize in memory (uniner-smol-135m: 540 MB fp32), each variant is
the fp32 export re-quantized by onnxruntime's own ``MatMulNBitsQuantizer`` with one algorithm
(asymmetric RTN, k-quant, HQQ), or by the toolkit's streaming pass (symmetric/asymmetric RTN,
accuracy level 0 vs 4, block 16, projections kept at int8, and a sensitivity sweep: one
projection group at int4 with the rest at int8). The folders then go into one ``uner bench`` run (the command is
printed), which scores F1 and ΔF1 with paired intervals against the torch reference, so the
algorithm worth porting into the streaming pass (``toolkit/onnx_quantize.py``, which a 7B model
needs) is chosen on evidence.

    .venv/bin/python bench/onnx_int4_algorithms.py --work /tmp/int4-algos [--source uniner-smol-135m]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.bench.reference_models import resolve_reference  # noqa: E402
from uner.errors import describe_error  # noqa: E402
from uner.manifest import file_entry  # noqa: E402
from uner.toolkit.export_onnx import export_onnx  # noqa: E402
from uner.toolkit.files import write_json_atomic  # noqa: E402

ONNX_FILE = "model.onnx"
_GROUPS = ("qkv_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: name -> export_onnx arguments (the streaming pass)
STREAMING = {
    "int4-rtn-sym": {"precision": "int4", "symmetric": True},
    "int4-rtn-asym": {"precision": "int4", "symmetric": False},
    "int4-rtn-sym-acc0": {"precision": "int4", "symmetric": True, "accuracy_level": 0},
    "int4-rtn-sym-head8": {"precision": "int4", "symmetric": True, "head_bits": 8},
    "int4-rtn-asym-head8": {"precision": "int4", "symmetric": False, "head_bits": 8},
    "int4-asym-b16": {"precision": "int4", "block_size": 16},
    "int4-int8-qkv-up": {"precision": "int4", "int8_projections": ("qkv_proj", "up_proj")},
    "int4-int8-qkv-up-down": {"precision": "int4", "int8_projections": ("qkv_proj", "up_proj", "down_proj")},
    "int4-b16-int8-qkv-up-down": {
        "precision": "int4",
        "block_size": 16,
        "int8_projections": ("qkv_proj", "up_proj", "down_proj"),
    },
}
#: the sensitivity sweep: one projection group (or the head) at int4, every other MatMul at int8
SWEEP = {
    **{
        f"sweep-int4-{group}": {
            "precision": "int4",
            "head_bits": 8,
            "int8_projections": tuple(g for g in _GROUPS if g != group),
        }
        for group in _GROUPS
    },
    "sweep-int4-lm_head": {"precision": "int4", "int8_projections": _GROUPS},
}
#: name -> (onnxruntime quantizer config, keyword arguments), run on the fp32 export in memory
IN_MEMORY = {
    "int4-kquant": ("KQuantWeightOnlyQuantConfig", {}),
    "int4-hqq-b32": ("HQQWeightOnlyQuantConfig", {"block_size": 32}),
    "int4-hqq-b64": ("HQQWeightOnlyQuantConfig", {"block_size": 64}),
}


def in_memory_variant(fp32: Path, out: Path, config_name: str, options: dict) -> Path:
    """``out``: a copy of the fp32 folder whose graph onnxruntime's quantizer re-quantized."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    if (out / "manifest.json").is_file():
        return out
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(fp32, stage, ignore=shutil.ignore_patterns(f"{ONNX_FILE}*", "manifest.json"))
    config = getattr(nbits, config_name)(**options)
    quantizer = nbits.MatMulNBitsQuantizer(
        onnx.load(str(fp32 / ONNX_FILE)), block_size=options.get("block_size", 32), algo_config=config
    )
    quantizer.process()
    onnx.save(quantizer.model.model, str(stage / ONNX_FILE), save_as_external_data=True, location=f"{ONNX_FILE}.data")
    manifest = json.loads((fp32 / "manifest.json").read_text())
    files = {p.name: file_entry(p) for p in sorted(stage.iterdir()) if p.is_file() and p.name != "manifest.json"}
    quantization = {"bits": 4, "algorithm": config_name, **options}
    manifest.update(precision="int4", quantization=quantization, files=files)
    write_json_atomic(stage / "manifest.json", manifest)
    stage.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/int4-algos"))
    parser.add_argument("--source", default="uniner-smol-135m", help="HF folder or reference name")
    args = parser.parse_args()
    source = Path(resolve_reference(args.source))
    fp32 = args.work / "onnx-fp32"
    if not (fp32 / "manifest.json").is_file():
        export_onnx(source, fp32, "fp32", force=True)
    folders = [fp32]
    for name, options in (STREAMING | SWEEP).items():
        if not (args.work / name / "manifest.json").is_file():
            export_onnx(source, args.work / name, force=True, **options)
        folders.append(args.work / name)
    for name, (config, options) in IN_MEMORY.items():
        try:
            folders.append(in_memory_variant(fp32, args.work / name, config, options))
        except Exception as exc:  # an algorithm that fails on this graph is reported, not fatal
            print(f"{name}: failed: {describe_error(exc)}")
    data = " ".join(
        f"-d ../shared/data/{f}"
        for f in (
            "crossner_ai/CrossNER_AI.json",
            "crossner_literature/CrossNER_literature.json",
            "crossner_music/CrossNER_music.json",
        )
    )
    candidates = " ".join(f"-c {folder}" for folder in folders)
    out = args.work / "bench"
    print(f"uner bench -r {args.source} {candidates} {data} --limit all --threads 2 --no-baselines -o {out}")


if __name__ == "__main__":
    main()
