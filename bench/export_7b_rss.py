"""Peak RSS and time of ``uner-export gguf|onnx`` on a random-weight checkpoint shaped like UniNER-7B.

UniNER-7B: LlamaForCausalLM, 32 layers, hidden 4096, intermediate 11008, 32 heads, vocab 32000,
context 2048, fp16 safetensors (13.5 GB). The checkpoint is written shard by shard with random
weights (the converter's memory does not depend on the values), then converted in a child
process whose peak RSS is read from ``getrusage``.

    .venv/bin/python bench/export_7b_rss.py gguf --work /tmp/uner-7b [--outtype f16] [--quant q4_k_m] [--keep]
    .venv/bin/python bench/export_7b_rss.py onnx --work /tmp/uner-7b [--precision int4] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = dict(n_layer=32, hidden=4096, ffn=11008, n_head=32, vocab=32000, ctx=2048)
ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT.parent / "shared" / "data" / "llama-tokenizer" / "tokenizer.model"


def tensor_shapes() -> list[tuple[str, tuple[int, ...]]]:
    h, f, v = SHAPE["hidden"], SHAPE["ffn"], SHAPE["vocab"]
    shapes = [("model.embed_tokens.weight", (v, h))]
    for i in range(SHAPE["n_layer"]):
        p = f"model.layers.{i}."
        shapes += [(p + f"self_attn.{n}_proj.weight", (h, h)) for n in "qkvo"]
        shapes += [
            (p + "mlp.gate_proj.weight", (f, h)),
            (p + "mlp.up_proj.weight", (f, h)),
            (p + "mlp.down_proj.weight", (h, f)),
        ]
        shapes += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,))]
    return shapes + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def write_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator) -> None:
    header, offset = {}, 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        for _, shape in tensors:
            rows = shape[0]
            for start in range(0, rows, 1024):  # bounded memory while writing
                chunk_shape = (min(1024, rows - start), *shape[1:])
                (rng.standard_normal(chunk_shape, dtype=np.float32) * 0.02).astype(np.float16).tofile(handle)


def write_index(folder: Path) -> None:
    """model.safetensors.index.json, as real sharded HF checkpoints carry (transformers needs it)."""
    weight_map, total = {}, 0
    for shard in sorted(folder.glob("*.safetensors")):
        with shard.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, entry in header.items():
            weight_map[name] = shard.name
            total += entry["data_offsets"][1] - entry["data_offsets"][0]
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def make_checkpoint(folder: Path, n_shards: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": SHAPE["hidden"],
        "intermediate_size": SHAPE["ffn"],
        "num_hidden_layers": SHAPE["n_layer"],
        "num_attention_heads": SHAPE["n_head"],
        "max_position_embeddings": SHAPE["ctx"],
        "rms_norm_eps": 1e-6,
        "vocab_size": SHAPE["vocab"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "torch_dtype": "float16",
        "tie_word_embeddings": False,
    }  # LLaMA-1-era config: no rope_theta, like UniNER's
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
            }
        )
    )
    shutil.copy(TOKENIZER, folder / "tokenizer.model")
    shapes = tensor_shapes()
    per_shard = -(-len(shapes) // n_shards)
    rng = np.random.default_rng(0)
    for i in range(n_shards):
        name = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        write_shard(folder / name, shapes[i * per_shard : (i + 1) * per_shard], rng)
        print(f"wrote {name}", file=sys.stderr)


def run_sampling_anon(command: list[str]) -> int:
    """Run ``command``; return its peak anonymous memory (KiB), sampled from /proc twice a second."""
    process = subprocess.Popen(command)
    peak = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = max(peak, int(status.split("RssAnon:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.5)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return peak


def export_command(args: argparse.Namespace, source: Path, out: Path) -> list[str]:
    command = [
        str(ROOT / ".venv" / "bin" / "uner-export"),
        args.format,
        str(source),
        "--out",
        str(out),
        "--force",
        "--quiet",
    ]
    if args.format == "gguf":
        return command + ["--outtype", args.outtype] + (["--quant", args.quant] if args.quant else [])
    return command + ["--precision", args.precision]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=["gguf", "onnx"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/uner-7b"))
    parser.add_argument("--outtype", default="f16", help="gguf: unquantized type")
    parser.add_argument("--quant", default="", help="gguf: quant types")
    parser.add_argument("--precision", default="int4", help="onnx: fp32, fp16, int8 or int4")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and outputs")
    args = parser.parse_args()
    source, out = args.work / "UniNER-7B-shaped", args.work / f"out-{args.format}"
    if not (source / "config.json").is_file():
        started = time.time()
        make_checkpoint(source)
        print(f"checkpoint written in {time.time() - started:.0f} s", file=sys.stderr)
    if not (source / "model.safetensors.index.json").is_file():
        write_index(source)
    started = time.time()
    peak_anon_kib = run_sampling_anon(export_command(args, source, out))
    elapsed = time.time() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    source_bytes = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    outputs = [p for p in sorted(out.iterdir()) if p.is_file()] if out.is_dir() else []
    report = {
        "shape": SHAPE,
        "format": args.format,
        "variant": args.precision if args.format == "onnx" else {"outtype": args.outtype, "quant": args.quant or None},
        "source_gb": round(source_bytes / 1e9, 2),
        "outputs_gb": {p.name: round(p.stat().st_size / 1e9, 2) for p in outputs if p.stat().st_size > 1e8},
        # RSS counts memory-mapped checkpoint pages, which the kernel can drop; anonymous
        # memory is what must fit in RAM.
        "peak_rss_gib": round(peak_kib / 2**20, 3),
        "peak_anon_gib": round(peak_anon_kib / 2**20, 3),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(args.work)


if __name__ == "__main__":
    main()
