"""(Archived experiment that built this run's int4-gptq variant, with float64 Hessians;
the toolkit now does it: `uner-export onnx --gptq-data`, float32 Hessians.)

Experiment: ONNX int4 by GPTQ with NER calibration (issue 14, item 5), against asymmetric RTN.

Measures each decoder MatMul's input Hessian ``Σ xᵀx`` with the torch model on UniNER
conversations from **training** splits (the imatrix's calibration stream, so the same text), then
exports int4 (asymmetric, block 32) with the streaming pass, the chosen weights rounded by GPTQ
(``toolkit/gptq.py``) instead of RTN. Prints the ``uner bench`` command that scores both.

    .venv/bin/python bench/onnx_int4_gptq.py --work /tmp/int4-gptq [--tokens 100000] [--head]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.bench.reference_models import resolve_reference  # noqa: E402
from uner.toolkit import onnx_quantize  # noqa: E402
from uner.toolkit.calibration import calibration_sequences  # noqa: E402
from uner.toolkit.export_onnx import export_onnx  # noqa: E402
from uner.toolkit.gptq import gptq_quantize  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TRAIN = ["conll2003/train.txt", "mit_movie/engtrain.bio", "crossner_ai/train.txt",
         "crossner_literature/train.txt", "crossner_music/train.txt"]  # fmt: skip
#: HF module -> the ONNX MatMul weight that reads the same input (q/k/v are one fused qkv_proj)
_ONNX_NAME = [
    (re.compile(r"model\.layers\.(\d+)\.self_attn\.q_proj"), r"model.layers.\1.attn.qkv_proj.MatMul.weight"),
    (re.compile(r"model\.layers\.(\d+)\.self_attn\.o_proj"), r"model.layers.\1.attn.o_proj.MatMul.weight"),
    (re.compile(r"model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj"), r"model.layers.\1.mlp.\2_proj.MatMul.weight"),
]


def onnx_weight_name(module: str) -> str | None:
    for pattern, replacement in _ONNX_NAME:
        if pattern.fullmatch(module):
            return pattern.sub(replacement, module)
    return "lm_head.MatMul.weight" if module == "lm_head" else None


def collect_hessians(model: Path, tokens: int) -> dict[str, np.ndarray]:
    import torch

    from uner.torch_backend import TorchExtractor

    hessians: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(_module, inputs):
            x = inputs[0].detach().double().reshape(-1, inputs[0].shape[-1])
            hessians[name] = hessians.get(name, 0) + x.T @ x

        return hook

    with TorchExtractor(model, dtype="float32", n_threads=2) as extractor, extractor.threads():
        hooks = [
            module.register_forward_pre_hook(hook_for(name))
            for module_name, module in extractor.model.named_modules()
            if (name := onnx_weight_name(module_name))
        ]
        files = [DATA / f for f in TRAIN]
        seen = 0
        with torch.inference_mode():
            for ids in calibration_sequences(files, extractor.encode, extractor.eos_id, extractor.bos_id, tokens):
                extractor.model(torch.tensor([ids[: extractor.context_length]]))
                seen += len(ids)
        for hook in hooks:
            hook.remove()
    print(f"hessians: {len(hessians)} weights, {seen} tokens")
    return {name: h.numpy() for name, h in hessians.items()}


def export_gptq(source: Path, out: Path, hessians: dict[str, np.ndarray], int8_projections=()) -> Path:
    """An int4 export whose 4-bit weights with a Hessian are rounded by GPTQ."""
    current = {}
    read, rtn = onnx_quantize._tensor_array, onnx_quantize.block_quantize

    def remember(tensor, folder):
        current["name"] = tensor.name
        return read(tensor, folder)

    def quantize(weight, bits, block_size, symmetric=True):
        name = current["name"]
        if bits == 4 and not symmetric and name in hessians:
            return gptq_quantize(weight, hessians[name], block_size)
        return rtn(weight, bits, block_size, symmetric)

    onnx_quantize._tensor_array, onnx_quantize.block_quantize = remember, quantize
    try:
        export_onnx(source, out, "int4", symmetric=False, int8_projections=int8_projections, force=True)
    finally:
        onnx_quantize._tensor_array, onnx_quantize.block_quantize = read, rtn
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/int4-gptq"))
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--head", action="store_true", help="also GPTQ the lm_head (the tied embedding)")
    args = parser.parse_args()
    source = Path(resolve_reference("uniner-smol-135m"))
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / f"hessians-{args.tokens}.npz"
    if cache.is_file():
        hessians = dict(np.load(cache))
    else:
        hessians = collect_hessians(source, args.tokens)
        np.savez(cache, **hessians)
    if not args.head:
        hessians.pop("lm_head.MatMul.weight", None)
    name = "int4-gptq" + ("-head" if args.head else "")
    folders = [export_gptq(source, args.work / name, hessians)]
    rtn = args.work / "int4-rtn-asym"
    if not (rtn / "manifest.json").is_file():
        export_onnx(source, rtn, "int4", symmetric=False, force=True)
    folders.append(rtn)
    data = " ".join(f"-d {DATA}/{f}" for f in ("crossner_ai/CrossNER_AI.json",
                    "crossner_literature/CrossNER_literature.json", "crossner_music/CrossNER_music.json"))  # fmt: skip
    candidates = " ".join(f"-c {folder}" for folder in folders)
    options = f"--limit 200 --threads 2 --no-baselines -o {args.work}/bench"
    print(f"uner bench -r uniner-smol-135m {candidates} {data} {options}")


if __name__ == "__main__":
    main()
