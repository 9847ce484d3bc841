"""Reduce a LoRA adapter's rank by truncating each module's update to its leading singular vectors.

The shipped uniner-smol-135m adapter was trained at rank 64 (38 MB of fp16, too large to keep in
git); most of each update's energy sits in a few directions. Each module's update
``ΔW = scale · B·A`` is factored exactly through two thin QR decompositions
(``B = Qb·Rb``, ``Aᵀ = Qa·Ra``, so ``ΔW = Qb · scale·Rb·Raᵀ · Qaᵀ``), the small r×r core is
decomposed by SVD, and the leading ``--rank`` directions are kept, split evenly between the new
B and A (``√σ`` each) with ``lora_alpha = rank`` (scale 1). What this costs in F1 is measured,
not assumed (bench the merged result against the original).

    .venv/bin/python bench/reduce_adapter_rank.py SRC_ADAPTER OUT_ADAPTER --rank 16
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def truncate(lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float, rank: int) -> tuple:
    """New (A, B) of rank ``rank`` with B·A closest to ``scale``·B·A, and the energy share kept."""
    q_b, r_b = torch.linalg.qr(lora_b.double())
    q_a, r_a = torch.linalg.qr(lora_a.double().T)
    u, sigma, vh = torch.linalg.svd(scale * r_b @ r_a.T)
    kept = float((sigma[:rank] ** 2).sum() / (sigma**2).sum())
    root = sigma[:rank].sqrt()
    new_b = (q_b @ u[:, :rank]) * root
    new_a = root[:, None] * (vh[:rank] @ q_a.T)
    return new_a, new_b, kept


def reduce_adapter(source: Path, dest: Path, rank: int) -> dict[str, float]:
    """Write ``source``'s adapter at ``rank`` to ``dest``; returns each module's kept energy share."""
    config = json.loads((source / "adapter_config.json").read_text())
    if config.get("use_rslora") or config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise SystemExit("Error: expected a plain LoRA adapter (no rsLoRA, DoRA or per-module ranks)")
    if rank >= config["r"]:
        raise SystemExit(f"Error: expected --rank below the adapter's rank {config['r']}, got {rank}")
    scale = config["lora_alpha"] / config["r"]
    weights = load_file(source / "adapter_model.safetensors")
    reduced, kept = {}, {}
    for name in sorted(weights):
        if ".lora_A." not in name:
            continue
        partner = name.replace(".lora_A.", ".lora_B.")
        new_a, new_b, kept[name.split(".lora_A.")[0]] = truncate(weights[name], weights[partner], scale, rank)
        dtype = weights[name].dtype
        reduced[name] = new_a.to(dtype).contiguous()
        reduced[partner] = new_b.to(dtype).contiguous()
    if len(reduced) != len(weights):
        raise SystemExit("Error: expected only lora_A / lora_B tensors in the adapter")
    config.update(r=rank, lora_alpha=rank)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    save_file(reduced, staging / "adapter_model.safetensors", metadata={"format": "pt"})
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    staging.chmod(0o755)  # mkdtemp's 0700 would make the installed package data unreadable to others
    for file in staging.iterdir():
        file.chmod(0o644)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return kept


def main(argv: list[str] | None = None) -> int:
    """Command line: reduce SRC's rank into OUT and print the energy kept per module type."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="PEFT LoRA adapter folder")
    parser.add_argument("dest", type=Path, help="output adapter folder (replaced)")
    parser.add_argument("--rank", type=int, default=16, help="rank to keep (default 16)")
    args = parser.parse_args(argv)
    kept = reduce_adapter(args.source, args.dest, args.rank)
    by_kind: dict[str, list[float]] = {}
    for module, share in kept.items():
        by_kind.setdefault(module.rsplit(".", 1)[-1], []).append(share)
    for kind, shares in sorted(by_kind.items()):
        print(f"{kind:10s} energy kept: mean {sum(shares) / len(shares):.3f}, min {min(shares):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
