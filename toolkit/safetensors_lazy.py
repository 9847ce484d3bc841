"""A lazy safetensors reader that loads one tensor at a time into fresh memory.

Memory-mapping a 13 GB checkpoint would leave every touched page counted in the exporter's
RSS; reading each tensor with ``readinto`` keeps the peak at about the largest tensor. The
format is small enough to parse here (8-byte header length, JSON header, raw data), which also
lets us read bf16 without torch and name exactly what is corrupt.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uner.toolkit.errors import CheckpointError

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # converted to float32 on read
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32, exactly (bf16 is the top half of a float32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_header(file: Path) -> tuple[int, int, object]:
    """(file size, where the data starts, the parsed JSON header) of one .safetensors file."""
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"expected a safetensors file, got {file.name} with {size} bytes")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(_MAX_HEADER, size - 8):
                raise CheckpointError(f"expected a safetensors header, got a corrupt one in {file.name}")
            raw = handle.read(header_len)
    except OSError as exc:
        raise CheckpointError(f"expected a readable safetensors file, got {file}: {exc.strerror or exc}") from exc
    try:
        return size, 8 + header_len, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"expected a JSON safetensors header in {file.name}, got: {exc}") from exc


def read_index(file: Path) -> dict[str, TensorEntry]:
    """Tensor entries of one .safetensors file, validated against the file size."""
    size, data_start, header = _read_header(file)
    if not isinstance(header, dict):
        raise CheckpointError(
            f"expected a JSON object as the safetensors header of {file.name}, got a {type(header).__name__}"
        )
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        # every field is checked for its type: a header is untrusted input, and a string where
        # a number belongs would otherwise surface as a numpy or arithmetic traceback
        fields = info if isinstance(info, dict) else {}
        dtype, shape, offsets = fields.get("dtype"), fields.get("shape"), fields.get("data_offsets")
        if not (
            isinstance(shape, list)
            and all(map(_is_count, shape))
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(map(_is_count, offsets))
            and isinstance(dtype, str)
        ):
            raise CheckpointError(f"expected dtype/shape/data_offsets for {name} in {file.name}, got {info!r:.80}")
        if dtype not in _DTYPES:
            raise CheckpointError(f"expected a supported dtype for {name} in {file.name}, got {dtype}")
        begin, end = offsets
        expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
        if end - begin != expected or data_start + end > size:
            raise CheckpointError(
                f"expected {expected} bytes of {name} inside {file.name}, got a truncated or corrupt file"
            )
        entries[name] = TensorEntry(file, name, dtype, tuple(shape), data_start + begin, data_start + end)
    return entries


def load_tensor(entry: TensorEntry) -> np.ndarray:
    """Read one tensor into its own buffer (float types as stored, bf16 as float32)."""
    dtype = _DTYPES[entry.dtype]
    buffer = np.empty(entry.end - entry.begin, dtype=np.uint8)
    with entry.file.open("rb") as handle:
        handle.seek(entry.begin)
        if handle.readinto(memoryview(buffer)) != buffer.size:
            raise CheckpointError(f"expected {buffer.size} bytes of {entry.name}, got fewer: truncated file")
    array = buffer.view(dtype).reshape(entry.shape)
    return bf16_to_float32(array) if entry.dtype == "BF16" else array
