"""A Hugging Face LLaMA checkpoint folder: validated config, hyper-parameters, lazy tensors."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uner.toolkit.errors import CheckpointError
from uner.toolkit.safetensors_lazy import TensorEntry, load_tensor, read_index

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
LLAMA1_ROPE_THETA = 10000.0
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
#: files beside the weights that say how to tokenize and generate; derived checkpoints
#: (merged adapters, ONNX folders) carry them over verbatim.
SIDE_FILES = (
    *TOKENIZER_FILES,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
)
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
_JSON_SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
)
#: the tensors of one decoder layer of ``LlamaForCausalLM`` (``model.layers.N.<part>.weight``).
_LAYER_TENSORS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
    "input_layernorm",
    "post_attention_layernorm",
)
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.")


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


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(config: dict, key: str, default: int | None = None) -> int:
    """``config[key]`` as a positive integer; ``default`` when absent or null (``None``: required)."""
    value = config.get(key)
    if value is None:
        if default is not None:
            return default
        got = "null" if key in config else "a config without it"
        raise CheckpointError(f"expected {key} in config.json, got {got}")
    # int("two") or int(None) would surface as a traceback, and 2.5 layers must not truncate to 2
    if not _number(value) or (isinstance(value, float) and not value.is_integer()) or value < 1:
        raise CheckpointError(f"expected a positive integer {key} in config.json, got {value!r}")
    return int(value)


def _positive_float(value: object, key: str) -> float:
    if not _number(value) or not value > 0 or value == float("inf"):
        raise CheckpointError(f"expected a positive number {key} in config.json, got {value!r}")
    return float(value)


def _table(config: dict, key: str) -> dict:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"expected {key} to be an object in config.json, got {value!r}")
    return value


def _rope_theta(config: dict) -> float:
    # transformers 5 nests it in rope_parameters, 4.x keeps it at the top, LLaMA-1 configs omit it.
    nested = _table(config, "rope_parameters")
    candidates = (("rope_parameters.rope_theta", nested.get("rope_theta")), ("rope_theta", config.get("rope_theta")))
    for key, value in candidates:
        if value is not None:
            return _positive_float(value, key)
    return LLAMA1_ROPE_THETA


def _rope_scaling(config: dict) -> dict | None:
    scaling = _table(config, "rope_scaling")
    nested = _table(config, "rope_parameters")
    kind = scaling.get("rope_type") or scaling.get("type") or nested.get("rope_type") or "default"
    if kind == "default":
        return None
    if kind != "linear":
        raise CheckpointError(f"expected no rope scaling or 'linear', got {kind!r} (not supported yet)")
    factor = scaling.get("factor") if scaling.get("factor") is not None else nested.get("factor")
    return {"type": "linear", "factor": _positive_float(factor, "rope_scaling.factor")}


def _flag(config: dict, key: str) -> bool:
    value = config.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):  # bool("false") is True: refuse rather than guess
        raise CheckpointError(f"expected true or false for {key} in config.json, got {value!r}")
    return value


def params_from_config(config: dict) -> LlamaParams:
    """The hyper-parameters of a LLaMA ``config.json``, each checked for its type and range.

    >>> params_from_config({"num_attention_heads": 4, "hidden_size": 64, "num_hidden_layers": 2,
    ...                     "intermediate_size": 128, "vocab_size": 10}).head_dim
    16
    """
    n_head = _positive_int(config, "num_attention_heads")
    n_embd = _positive_int(config, "hidden_size")
    rms_eps = config.get("rms_norm_eps")
    return LlamaParams(
        n_layer=_positive_int(config, "num_hidden_layers"),
        n_embd=n_embd,
        n_ff=_positive_int(config, "intermediate_size"),
        n_head=n_head,
        n_head_kv=_positive_int(config, "num_key_value_heads", n_head),
        head_dim=_positive_int(config, "head_dim", max(n_embd // n_head, 1)),
        n_ctx=_positive_int(config, "max_position_embeddings", _positive_int(config, "max_sequence_length", 2048)),
        rms_eps=1e-6 if rms_eps is None else _positive_float(rms_eps, "rms_norm_eps"),
        rope_theta=_rope_theta(config),
        vocab_size=_positive_int(config, "vocab_size"),
        tie_embeddings=_flag(config, "tie_word_embeddings"),
        rope_scaling=_rope_scaling(config),
    )


def copy_side_files(source: Path, dest: Path) -> None:
    """Copy the ``SIDE_FILES`` that ``source`` has into ``dest``, a checkpoint derived from it."""
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)


def read_json_object(path: Path) -> dict:
    """``path`` parsed as a JSON object, or a :class:`CheckpointError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"expected valid JSON in {path}, got: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"expected a JSON object in {path}, got a {type(data).__name__}")
    return data


def expected_tensor_names(params: LlamaParams) -> list[str]:
    """Every tensor a ``LlamaForCausalLM`` of ``params`` needs (HF names); llama.cpp refuses a
    GGUF that lacks any of them, so conversion checks for them before writing anything."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not params.tie_embeddings:
        names.append("lm_head.weight")
    for layer in range(params.n_layer):
        names += [f"model.layers.{layer}.{part}.weight" for part in _LAYER_TENSORS]
    return names


class HFCheckpoint:
    """A local HF LLaMA folder, checked up front so conversion fails before writing anything:
    the config's values, the JSON side files, the shard index and that every tensor of every
    layer is present.

    Args:
        folder: the model folder.
        allow_pickle: also accept ``pytorch_model*.bin`` (unpickling can run code; opt in).
    """

    def __init__(self, folder: str | Path, allow_pickle: bool = False) -> None:
        self.folder = Path(folder)
        if self.folder.is_file():
            raise CheckpointError(
                f"expected a model folder (config.json, weights, tokenizer), got the file {self.folder}"
            )
        if not self.folder.is_dir():
            raise CheckpointError(f"expected a model folder, got {self.folder}, which does not exist")
        self.config = self._read_config()
        architectures = self.config.get("architectures") or []
        if not isinstance(architectures, list) or not all(isinstance(arch, str) for arch in architectures):
            raise CheckpointError(f"expected a list of names as architectures in config.json, got {architectures!r}")
        if not any(arch in SUPPORTED_ARCHITECTURES for arch in architectures):
            raise CheckpointError(f"expected architecture LlamaForCausalLM, got {', '.join(architectures) or 'none'}")
        self.params = params_from_config(self.config)
        if not any((self.folder / name).is_file() for name in TOKENIZER_FILES):
            raise CheckpointError(f"expected tokenizer.model or tokenizer.json in {self.folder}, got neither")
        for name in _JSON_SIDE_FILES:  # parsed later by gguf-py, the builder or transformers
            if (self.folder / name).is_file():
                read_json_object(self.folder / name)
        self._indexed: list[str] = []
        self.weight_files, self._entries = self._find_weights(allow_pickle)
        self.check_complete(self.tensor_names())

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    def _read_config(self) -> dict:
        path = self.folder / "config.json"
        if not path.is_file():
            raise CheckpointError(f"expected config.json in {self.folder}, got none")
        return read_json_object(path)

    def _shards(self, index_name: str) -> dict[str, str] | None:
        """tensor -> shard file of ``index_name``, each shard checked to exist; None without an index."""
        path = self.folder / index_name
        if not path.is_file():
            return None
        weight_map = read_json_object(path).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(
                f"expected a weight_map of tensor names to shard files in {path}, got {weight_map!r:.80}"
            )
        shards = sorted(set(weight_map.values()))
        if odd := [s for s in shards if Path(s).name != s or s in ("", ".", "..")]:
            raise CheckpointError(f"expected shard file names in {path}, got {odd[0]!r}")
        if missing := [s for s in shards if not (self.folder / s).is_file()]:
            raise CheckpointError(
                f"expected the {len(shards)} shards {index_name} names in {self.folder}, got {len(missing)} missing: "
                + ", ".join(missing)
            )
        return weight_map

    def _find_weights(self, allow_pickle: bool) -> tuple[list[Path], dict]:
        index = self._shards(SAFETENSORS_INDEX)
        # with an index, only the shards it names: a stray consolidated.safetensors is not a shard
        safetensors = (
            [self.folder / s for s in sorted(set(index.values()))]
            if index is not None
            else sorted(self.folder.glob("*.safetensors"))
        )
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
        if pickles or (self.folder / PICKLE_INDEX).is_file():
            pickle_index = self._shards(PICKLE_INDEX)
            if pickle_index is not None:
                self._indexed = list(pickle_index)
                return [self.folder / s for s in sorted(set(pickle_index.values()))], {}
            return pickles, {}
        raise CheckpointError(f"expected *.safetensors (or pytorch_model*.bin) weights in {self.folder}, got none")

    def tensor_names(self) -> list[str]:
        """Names of the tensors in the weight files (from headers or the index where they exist)."""
        if self._entries:
            return list(self._entries)
        if self._indexed:
            return list(self._indexed)
        return [name for name, _, _ in _pickled_tensors(self.weight_files)]

    def check_complete(self, names: Iterable[str]) -> None:
        """Refuse weights that lack a tensor the config implies, or hold layers it does not."""
        present = set(names)
        missing = [n for n in expected_tensor_names(self.params) if n not in present]
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise CheckpointError(
                f"expected every tensor of the {self.params.n_layer} layers config.json declares in {self.folder}, "
                f"got {len(missing)} missing: {shown}"
            )
        layers = {int(m.group(1)) for n in present if (m := _LAYER_NAME.match(n))}
        if extra := sorted(layer for layer in layers if layer >= self.params.n_layer):
            raise CheckpointError(
                f"expected {self.params.n_layer} layers (num_hidden_layers in config.json), "
                f"got weights of layer {', '.join(map(str, extra))} too in {self.folder}"
            )

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
            yield (
                name,
                tuple(tensor.shape),
                (lambda t=tensor: t.float().numpy() if t.is_floating_point() else t.numpy()),
            )
        del state
