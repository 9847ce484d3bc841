"""A Hugging Face LLaMA checkpoint folder: validated config, hyper-parameters, lazy tensors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import CheckpointError
from toolkit.safetensors_lazy import TensorEntry, load_tensor, read_index

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
LLAMA1_ROPE_THETA = 10000.0
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
#: files beside the weights that say how to tokenize and generate; derived checkpoints
#: (merged adapters, ONNX folders) carry them over verbatim.
SIDE_FILES = (*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
              "generation_config.json")


@dataclass(frozen=True)
class LlamaParams:
    """The hyper-parameters GGUF needs, read the same way whatever transformers wrote them."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rms_eps: float
    rope_theta: float
    vocab_size: int
    tie_embeddings: bool
    rope_scaling: dict | None


def _rope_theta(config: dict) -> float:
    # transformers 5 nests it in rope_parameters, 4.x keeps it at the top, LLaMA-1 configs omit it.
    nested = config.get("rope_parameters") or {}
    return float(nested.get("rope_theta") or config.get("rope_theta") or LLAMA1_ROPE_THETA)


def _rope_scaling(config: dict) -> dict | None:
    scaling = config.get("rope_scaling") or {}
    nested = config.get("rope_parameters") or {}
    kind = scaling.get("rope_type") or scaling.get("type") or nested.get("rope_type") or "default"
    if kind == "default":
        return None
    if kind != "linear":
        raise CheckpointError(f"expected no rope scaling or 'linear', got {kind!r} (not supported yet)")
    return {"type": "linear", "factor": float(scaling.get("factor") or nested.get("factor"))}


def params_from_config(config: dict) -> LlamaParams:
    try:
        n_head = int(config["num_attention_heads"])
        n_embd = int(config["hidden_size"])
        return LlamaParams(
            n_layer=int(config["num_hidden_layers"]),
            n_embd=n_embd,
            n_ff=int(config["intermediate_size"]),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=int(config.get("head_dim") or n_embd // n_head),
            n_ctx=int(config.get("max_position_embeddings") or config.get("max_sequence_length") or 2048),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=_rope_theta(config),
            vocab_size=int(config["vocab_size"]),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            rope_scaling=_rope_scaling(config),
        )
    except KeyError as exc:
        raise CheckpointError(f"expected {exc.args[0]} in config.json, got a config without it") from exc


class HFCheckpoint:
    """A local HF LLaMA folder, checked up front so conversion fails before writing anything.

    Args:
        folder: the model folder.
        allow_pickle: also accept ``pytorch_model*.bin`` (unpickling can run code; opt in).
    """

    def __init__(self, folder: str | Path, allow_pickle: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CheckpointError(f"expected a model folder, got {self.folder}, which does not exist")
        self.config = self._read_config()
        architectures = self.config.get("architectures") or []
        if not any(arch in SUPPORTED_ARCHITECTURES for arch in architectures):
            raise CheckpointError(
                f"expected architecture LlamaForCausalLM, got {', '.join(architectures) or 'none'}"
            )
        self.params = params_from_config(self.config)
        if not any((self.folder / name).is_file() for name in TOKENIZER_FILES):
            raise CheckpointError(f"expected tokenizer.model or tokenizer.json in {self.folder}, got neither")
        self.weight_files, self._entries = self._find_weights(allow_pickle)

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    def _read_config(self) -> dict:
        path = self.folder / "config.json"
        if not path.is_file():
            raise CheckpointError(f"expected config.json in {self.folder}, got none")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"expected valid JSON in {path}, got: {exc}") from exc

    def _find_weights(self, allow_pickle: bool) -> tuple[list[Path], dict]:
        safetensors = sorted(self.folder.glob("*.safetensors"))
        if safetensors:
            entries: dict[str, TensorEntry] = {}
            for file in safetensors:
                entries.update(read_index(file))
            return safetensors, entries
        pickles = sorted(self.folder.glob("pytorch_model*.bin"))
        if pickles and not allow_pickle:
            raise CheckpointError(
                f"expected .safetensors weights, got only {pickles[0].name}: pass --allow-pickle "
                "to unpickle it (only for checkpoints you trust)"
            )
        if pickles:
            return pickles, {}
        raise CheckpointError(f"expected *.safetensors (or pytorch_model*.bin) weights in {self.folder}, got none")

    def tensors(self) -> Iterator[tuple[str, tuple[int, ...], Callable[[], np.ndarray]]]:
        """``(name, shape, load)`` per tensor; ``load()`` reads just that tensor."""
        if self._entries:
            for name, entry in self._entries.items():
                yield name, entry.shape, (lambda entry=entry: load_tensor(entry))
            return
        yield from _pickled_tensors(self.weight_files)


def _pickled_tensors(files: list[Path]) -> Iterator[tuple[str, tuple[int, ...], Callable[[], np.ndarray]]]:
    try:
        import torch
    except ImportError as exc:
        raise CheckpointError("expected torch to read pytorch_model*.bin: pip install torch") from exc
    for file in files:
        try:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        except Exception as exc:  # torch raises many types for a bad pickle
            raise CheckpointError(f"expected a readable torch checkpoint, got {file.name}: {exc}") from exc
        for name, tensor in state.items():
            yield name, tuple(tensor.shape), (lambda t=tensor: t.float().numpy() if t.is_floating_point() else t.numpy())
        del state
