"""Asymmetric block quantization with a searched scale (data-free), in MatMulNBits' layout.

Round-to-nearest takes each block's range as it is: one outlier stretches the grid and every
other weight of the block loses resolution. llama.cpp's K-quants (``make_qkx2_quants``) and
onnxruntime's ``k_quant`` instead try a few narrower and wider grids per block and keep the one
whose weighted squared error is least, the weight of an element being ``rms(block) + |x|`` so
large weights count more. Two differences from onnxruntime's port: its zero point is rounded to
an integer *after* the search (the grid it scores is not the grid MatMulNBits decodes), while
here every candidate is scored as decoded, ``(q - zero_point) * scale`` with an integer zero
point and the scale refitted for it; and RTN's own grid is one of the candidates, so a block is
never worse than round-to-nearest by this measure. Vectorised over blocks in chunks, so one
tensor of a 7B model stays a few hundred MB.
"""

from __future__ import annotations

import numpy as np

_CHUNK_BLOCKS = 1 << 18  # blocks per vectorised step: 8M values, ~32 MB per float32 array
_STEPS = 20  # grid widths tried per block: (levels - 1 + offset) / range, offset in [-1, +1)
_OFFSET_FROM, _OFFSET_STEP = -1.0, 0.1


def _weighted_fit(x: np.ndarray, weight: np.ndarray, codes: np.ndarray, levels: int):
    """Integer zero point and scale that fit ``x ≈ (codes - zp) * scale`` (weighted least squares
    for scale and offset, then the offset rounded to the grid and the scale refitted)."""
    sum_w = weight.sum(axis=1, keepdims=True)
    sum_x = (weight * x).sum(axis=1, keepdims=True)
    sum_l = (weight * codes).sum(axis=1, keepdims=True)
    sum_ll = (weight * codes * codes).sum(axis=1, keepdims=True)
    sum_xl = (weight * x * codes).sum(axis=1, keepdims=True)
    det = sum_w * sum_ll - sum_l * sum_l
    safe = np.where(det > 0, det, 1.0)
    scale = np.where(det > 0, (sum_w * sum_xl - sum_x * sum_l) / safe, 0.0)
    offset = np.where(det > 0, (sum_ll * sum_x - sum_l * sum_xl) / safe, 0.0)
    positive = scale > 0
    zero_point = np.clip(np.round(-offset / np.where(positive, scale, 1.0)), 0, levels - 1)
    centred = codes - zero_point
    denominator = (weight * centred * centred).sum(axis=1, keepdims=True)
    refitted = (weight * x * centred).sum(axis=1, keepdims=True) / np.where(denominator > 0, denominator, 1.0)
    scale = np.where(positive & (denominator > 0), refitted, 0.0)
    return scale, zero_point


def _decode_error(x, weight, scale, zero_point, levels):
    """Codes for ``x`` on the grid ``(scale, zero_point)`` and their weighted squared error."""
    usable = scale > 0
    codes = np.clip(np.round(x / np.where(usable, scale, 1.0)) + zero_point, 0, levels - 1)
    codes = np.where(usable, codes, zero_point)
    error = (weight * ((codes - zero_point) * scale - x) ** 2).sum(axis=1, keepdims=True)
    return codes, error


def _rtn_grid(x: np.ndarray, levels: int):
    """Round-to-nearest over the block's range widened to include 0 (as MLAS does)."""
    low = np.minimum(x.min(axis=1, keepdims=True), 0.0)
    high = np.maximum(x.max(axis=1, keepdims=True), 0.0)
    scale = (high - low) / (levels - 1)
    zero_point = np.clip(np.round(-low / np.where(scale > 0, scale, 1.0)), 0, levels - 1)
    return scale, zero_point


def search_blocks(
    blocks: np.ndarray, bits: int, importance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, scales, zero_points)`` for ``blocks [B, block]`` (float32): per block the grid
    of least weighted error among round-to-nearest and ``_STEPS`` searched widths.
    ``importance [P, block]``: per input column, the mean squared activation it meets (an
    importance matrix), block ``i`` reading row ``i % P``; it scales each element's weight, as
    llama.cpp's quantizers do with ``--imatrix`` (``qw[j] * sqrt(sigma2 + x[j]^2)``)."""
    levels = 1 << bits
    codes = np.empty(blocks.shape, np.uint8)
    scales = np.empty(len(blocks), np.float32)
    zero_points = np.empty(len(blocks), np.uint8)
    for start in range(0, len(blocks), _CHUNK_BLOCKS):
        x = blocks[start : start + _CHUNK_BLOCKS].astype(np.float64)
        if importance is None:
            weight = np.sqrt((x * x).mean(axis=1, keepdims=True)) + np.abs(x)
        else:
            rows = importance[np.arange(start, start + len(x)) % len(importance)]
            weight = rows * np.sqrt((x * x).mean(axis=1, keepdims=True) + x * x)
        best_scale, best_zero = _rtn_grid(x, levels)
        best_codes, best_error = _decode_error(x, weight, best_scale, best_zero, levels)
        low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        spread = np.where(high > low, high - low, 1.0)
        for step in range(_STEPS):
            inverse = (levels - 1 + _OFFSET_FROM + _OFFSET_STEP * step) / spread
            trial = np.clip(np.round(inverse * (x - low)), 0, levels - 1)
            scale, zero_point = _weighted_fit(x, weight, trial, levels)
            trial_codes, error = _decode_error(x, weight, scale, zero_point, levels)
            better = error < best_error
            best_codes = np.where(better, trial_codes, best_codes)
            best_scale = np.where(better, scale, best_scale)
            best_zero = np.where(better, zero_point, best_zero)
            best_error = np.minimum(error, best_error)
        end = start + len(x)
        codes[start:end] = best_codes
        scales[start:end] = best_scale[:, 0]
        zero_points[start:end] = best_zero[:, 0]
    return codes, scales, zero_points


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 codes packed along the last axis, two 4-bit codes per byte, low nibble first."""
    if bits == 8:
        return values.astype(np.uint8)
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), values.dtype)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def searched_block_quantize(
    weight: np.ndarray, bits: int, block_size: int, importance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``[K, N]`` MatMul weight as MatMulNBits' ``packed [N, K/block, block*bits/8]``,
    ``scales [N, K/block]`` and ``zero_points [N, ceil(K/block*bits/8)]`` (see ``search_blocks``;
    ``importance [K]``: the mean squared activation per input row)."""
    rows, cols = weight.shape
    k_blocks = -(-rows // block_size)
    padded = np.zeros((k_blocks * block_size, cols), dtype=np.float32)
    padded[:rows] = weight
    blocks = np.ascontiguousarray(padded.T).reshape(cols * k_blocks, block_size)
    per_block = None
    if importance is not None:
        per_block = np.zeros(k_blocks * block_size, np.float64)
        per_block[:rows] = importance
        per_block = per_block.reshape(k_blocks, block_size) + 1e-12  # padding counts for (almost) nothing
    codes, scales, zero_points = search_blocks(blocks, bits, per_block)
    packed = _pack(codes.reshape(cols, k_blocks, block_size), bits)
    return packed, scales.reshape(cols, k_blocks), _pack(zero_points.reshape(cols, k_blocks), bits)
