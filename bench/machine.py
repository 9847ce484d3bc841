"""What the bench records about the machine: versions, CPU, memory bandwidth, artifact sizes."""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

_PACKAGES = ("uner-toolkit", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "llama-cpp-python", "numpy")


def versions() -> dict[str, str | None]:
    found = {}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return {"python": platform.python_version(), **found}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def memory_bandwidth(threads: int, megabytes: int = 512, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s: ``threads`` threads summing disjoint slices of a buffer far
    larger than the caches (numpy releases the GIL), best of ``repeats``."""
    data = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    slices = np.array_split(data, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(np.sum, slices))
            best = min(best, time.perf_counter() - started)
    return data.nbytes / best


def machine_info(threads: int) -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads_used": threads,
        "memory_bytes": _total_memory_bytes(),
        "platform": platform.platform(),
        "read_bandwidth_bytes_per_s": memory_bandwidth(threads),
    }


def artifact_bytes(path: str | Path) -> int:
    """Bytes on disk of a model artifact: the file, or the weights and graph files of a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    weights = [
        p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf") or p.name.startswith("model.onnx")
    ]
    return sum(p.stat().st_size for p in weights)


def stored_weight_bytes(path: str | Path) -> int:
    """Bytes of the weights an artifact stores: a GGUF's tensor data (not its vocabulary and
    metadata, as llama.cpp counts model size), else :func:`artifact_bytes`."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        try:
            from gguf import GGUFReader
        except ImportError:  # an edge install without the exporters: the file is close enough
            return path.stat().st_size
        return sum(int(tensor.n_bytes) for tensor in GGUFReader(path).tensors)
    return artifact_bytes(path)
