"""GPTQ (Frantar et al. 2022) block quantization into onnxruntime's MatMulNBits layout.

Round-to-nearest rounds every weight on its own; GPTQ rounds one input column at a time and
moves each column's rounding error onto the columns not yet rounded, weighted by the inverse of
the layer's input Hessian ``H = Σ xᵀx`` (measured on calibration text), so the error of the
layer's *output* on that text is what is minimised. Blocks (groups) run along the input axis as
in MatMulNBits, each with an asymmetric grid chosen when the sweep reaches it from the weights as
they are by then (GPTQ's static groups, no act-order: MatMulNBits has no column permutation on
this path). With ``H = I`` no error moves and the result is plain asymmetric RTN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uner.toolkit.calibration import DEFAULT_TOKENS, measure_inputs
from uner.toolkit.checkpoint import LlamaParams, params_from_config, read_json_object


def hessian_from(inputs: np.ndarray) -> np.ndarray:
    """``Σ xᵀx`` over the rows of ``inputs`` ``[tokens, K]``, float64 (what a calibration hook sums)."""
    x = np.asarray(inputs, dtype=np.float64)
    return x.T @ x


def gptq_quantize(
    weight: np.ndarray, hessian: np.ndarray, block_size: int = 32, damp: float = 0.01, sweep: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4-bit GPTQ of a MatMul weight ``[K, N]`` in MatMulNBits' layout, as ``block_quantize``
    returns it asymmetric: ``packed [N, K/block, block/2]`` uint8, ``scales [N, K/block]``
    float32 and ``zero_points [N, ceil(K/block/2)]`` uint8. ``hessian`` is ``[K, K]``;
    ``damp`` (a share of its mean diagonal) keeps its inverse stable."""
    import torch

    rows, cols = weight.shape
    if rows % block_size or sweep % block_size:
        raise ValueError(f"expected K ({rows}) and the sweep ({sweep}) to be multiples of the block ({block_size})")
    w = torch.from_numpy(np.array(weight, dtype=np.float64).T.copy())  # [N, K]: a row per output
    h = torch.from_numpy(np.asarray(hessian, dtype=np.float64)).clone()
    dead = torch.diag(h) == 0  # inputs that never fire: their weights cannot matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.diag(h).mean() * torch.eye(rows, dtype=torch.float64)
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros((cols, rows), dtype=torch.uint8)
    scales = torch.zeros((cols, rows // block_size), dtype=torch.float64)
    zeros = torch.zeros((cols, rows // block_size), dtype=torch.float64)
    for start in range(0, rows, sweep):
        end = min(start + sweep, rows)
        part, errors, part_inverse = (
            w[:, start:end].clone(),
            torch.zeros_like(w[:, start:end]),
            inverse[start:end, start:end],
        )
        for i in range(end - start):
            column = start + i
            if column % block_size == 0:
                group = column // block_size
                scales[:, group], zeros[:, group] = _asymmetric_grid(part[:, i : i + block_size])
            scale, zero = scales[:, column // block_size], zeros[:, column // block_size]
            q = torch.clamp(torch.round(part[:, i] / torch.where(scale == 0, 1.0, scale)) + zero, 0, 15)
            codes[:, column] = q.to(torch.uint8)
            error = (part[:, i] - (q - zero) * scale) / part_inverse[i, i]
            part[:, i:] -= error[:, None] * part_inverse[i, i:][None, :]
            errors[:, i] = error
        w[:, end:] -= errors @ inverse[start:end, end:]
    return _pack(codes.numpy(), block_size), scales.float().numpy(), _pack_zero_points(zeros.numpy().astype(np.uint8))


def _asymmetric_grid(block):
    """Scale and integer zero point of each row's block, as onnxruntime's asymmetric RTN picks them
    (the range always holds 0, so 0 is exact)."""
    import torch

    low = torch.clamp(block.min(dim=1).values, max=0.0)
    high = torch.clamp(block.max(dim=1).values, min=0.0)
    scale = (high - low) / 15
    zero = torch.where(scale == 0, torch.zeros_like(low), torch.clamp(torch.round(-low / scale), 0, 15))
    return scale, zero


def _pack(codes: np.ndarray, block_size: int) -> np.ndarray:
    """``[N, K]`` 4-bit codes -> ``[N, K/block, block/2]`` bytes, the lower-index code in the low nibble."""
    pairs = codes.reshape(codes.shape[0], -1, block_size // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8)


def _pack_zero_points(zero_points: np.ndarray) -> np.ndarray:
    """``[N, blocks]`` 4-bit zero points -> ``[N, ceil(blocks/2)]`` bytes, packed like the codes
    (an odd count's spare nibble holds 8, the middle, as onnxruntime's own quantizer writes it)."""
    rows, blocks = zero_points.shape
    padded = np.full((rows, blocks + blocks % 2), 8, dtype=np.uint8)
    padded[:, :blocks] = zero_points
    return (padded[:, 0::2] | (padded[:, 1::2] << 4)).astype(np.uint8)


#: the builder's MatMul weights, by the HF module whose input they read (q/k/v are one fused
#: qkv_proj; gate and up read the same input, so one Hessian serves both)
_ONNX_WEIGHTS = [
    (re.compile(r"model\.layers\.(\d+)\.self_attn\.q_proj"), ("attn.qkv_proj",)),
    (re.compile(r"model\.layers\.(\d+)\.self_attn\.o_proj"), ("attn.o_proj",)),
    (re.compile(r"model\.layers\.(\d+)\.mlp\.gate_proj"), ("mlp.gate_proj", "mlp.up_proj")),
    (re.compile(r"model\.layers\.(\d+)\.mlp\.down_proj"), ("mlp.down_proj",)),
]
HEAD_WEIGHT = "lm_head.MatMul.weight"
HESSIAN_BUDGET = 4 << 30  # bytes of float32 Hessians held at once; more layers take more passes


def onnx_weights_reading(module: str) -> tuple[int | None, tuple[str, ...]]:
    """(layer, the ONNX MatMul weights whose input is HF ``module``'s input); (None, ()) for others."""
    for pattern, parts in _ONNX_WEIGHTS:
        if match := pattern.fullmatch(module):
            layer = int(match.group(1))
            return layer, tuple(f"model.layers.{layer}.{part}.MatMul.weight" for part in parts)
    return None, ()


def _layer_bytes(params: LlamaParams) -> int:
    """float32 bytes of one decoder layer's Hessians: qkv, o, gate/up, down inputs."""
    return 4 * (2 * params.n_embd**2 + (params.n_head * params.head_dim) ** 2 + params.n_ff**2)


def collect_hessians(
    model: Path,
    files: Sequence[Path],
    *,
    tokens: int = DEFAULT_TOKENS,
    mode: str = "conversations",
    head: bool = False,
    n_threads: int | None = None,
    progress: bool = True,
    budget: int = HESSIAN_BUDGET,
) -> dict[str, np.ndarray]:
    """Per ONNX MatMul weight of the HF model at ``model``: its input Hessian ``Σ xᵀx`` (float32)
    on calibration sequences from ``files`` (``head``: the lm_head's too). Layers whose Hessians
    exceed ``budget`` bytes together are measured in further passes over the same sequences
    (7B: ~690 MB a layer, 6 passes at the default), so memory stays the model plus ``budget``."""
    import torch

    params = params_from_config(read_json_object(Path(model) / "config.json"))
    per_pass = max(1, budget // _layer_bytes(params))
    hessians: dict[str, np.ndarray] = {}
    readers: dict[str, tuple[str, ...]] = {HEAD_WEIGHT: (HEAD_WEIGHT,)}  # measured name -> weights reading it
    for first in range(0, params.n_layer, per_pass):
        layers = range(first, first + per_pass)
        sums: dict[str, torch.Tensor] = {}

        def select(torch_model, layers=layers, with_head=head and first == 0) -> dict:
            chosen = {}
            for module_name, module in torch_model.named_modules():
                layer, names = onnx_weights_reading(module_name)
                if layer in layers:
                    chosen[names[0]] = module
                    readers[names[0]] = names
            if with_head:
                chosen[HEAD_WEIGHT] = torch_model.get_output_embeddings()
            return chosen

        def accumulate(name: str, x, sums=sums) -> None:
            sums[name] = sums[name].addmm_(x.T, x) if name in sums else x.T @ x

        measure_inputs(
            model, files, select, accumulate, tokens=tokens, mode=mode, n_threads=n_threads, progress=progress,
            label=f"hessians (layers {layers.start}-{min(layers.stop, params.n_layer) - 1})",
        )  # fmt: skip
        for name, total in sums.items():
            hessians.update(dict.fromkeys(readers[name], total.numpy()))  # gate and up share one array
    return hessians
