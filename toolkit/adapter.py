"""Merging a PEFT LoRA adapter into its base checkpoint before export (``--adapter``).

Users fine-tune UniNER with LoRA; the converters read plain HF folders, so the adapter is merged
(W + B·A·scale) into a temporary HF folder beside the output, which is removed afterwards. The
merge holds the base model in memory once, in the checkpoint's own dtype (13.5 GB for a 7B fp16
model).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from uner.errors import first_line
from uner.toolkit.checkpoint import copy_side_files, read_json_object
from uner.toolkit.errors import CheckpointError


def _check_adapter(adapter: Path) -> dict:
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise CheckpointError(f"expected a PEFT adapter folder with adapter_config.json, got {adapter}")
    config = read_json_object(config_file)
    if config.get("peft_type") != "LORA":
        raise CheckpointError(f"expected a LoRA adapter, got peft_type {config.get('peft_type')!r} in {adapter}")
    if not any((adapter / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        raise CheckpointError(f"expected adapter_model.safetensors in {adapter}, got none")
    return config


def merge_adapter(base: Path, adapter: Path, dest: Path) -> Path:
    """Write ``base`` with the LoRA ``adapter`` merged into it as a HF folder at ``dest``."""
    _check_adapter(adapter)
    try:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise CheckpointError(
            'expected peft and transformers to merge an adapter: pip install "uner-toolkit[train,torch]"'
        ) from exc
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    try:
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:  # shape or module mismatches
        raise CheckpointError(f"expected an adapter trained on {base.name}, got {adapter}: {first_line(exc)}") from exc
    merged.save_pretrained(dest)
    copy_side_files(base, dest)
    return dest


def merge_prefix(owner: str) -> str:
    """The prefix of the scratch folder a merge for the output ``owner`` is written under."""
    return f".{owner}.merge-" if owner else ".merge-"


@contextlib.contextmanager
def merged_source(base: str | Path, adapter: str | Path | None, work_dir: Path, owner: str = "") -> Iterator[Path]:
    """``base`` itself without an adapter; else a temporary merged folder inside ``work_dir``.

    ``owner`` (the output's name) goes into the scratch folder's name, so that the next
    successful export of that output can tell a killed run's leftover merge from another
    export's (:func:`uner.toolkit.files.remove_stale_partials`).
    """
    if adapter is None:
        yield Path(base)
        return
    _check_adapter(Path(adapter))  # before anything is created
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=merge_prefix(owner), suffix=".partial", dir=work_dir))
    try:
        yield merge_adapter(Path(base), Path(adapter), scratch / Path(base).resolve().name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
