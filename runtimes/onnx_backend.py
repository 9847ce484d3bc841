"""ONNX Runtime backend: our own greedy loop over an ``InferenceSession`` with the KV cache.

Needs only onnxruntime, numpy and a tokenizer package (no torch, no transformers). Inputs and
outputs go through IO binding on every provider: on CUDA/TensorRT the KV cache stays on the
device between steps and only the last logits row comes back to the host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uner.base import GenerativeExtractor
from uner.checks import check_threads
from uner.engine import greedy_continuation
from uner.errors import BackendUnavailable, InputError, ModelNotFound, ProviderUnavailable, first_line
from uner.jsonfile import read_json
from uner.onnx_branches import DEFAULT_MAX_BRANCHES, OnnxBranches
from uner.onnx_layout import PROVIDERS, RUNS_ON, OnnxLayout, read_layout
from uner.tokenizer import FolderTokenizer

logger = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", *PROVIDERS)
_PAST_PREFIX, _PRESENT_PREFIX = "past_key_values.", "present."
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def choose_provider(requested: str, precision: str | None, available: Sequence[str]) -> str:
    """The provider to run on: ``requested`` if it can, else a clear error; ``auto`` takes the
    first of tensorrt -> cuda -> cpu that this install has and the precision supports."""
    runs_on = RUNS_ON.get(precision or "", tuple(PROVIDERS))
    if requested == "auto":
        for name in PROVIDERS:
            if name in runs_on and PROVIDERS[name] in available:
                return name
        raise ProviderUnavailable(
            f"expected one of {', '.join(runs_on)} for {precision} in onnxruntime, got {', '.join(available)}"
        )
    if requested not in PROVIDERS:
        raise InputError(f"expected --provider among {', '.join(PROVIDER_CHOICES)}, got {requested!r}")
    if requested not in runs_on:
        raise InputError(f"expected --provider among {', '.join(runs_on)} for a {precision} export, got {requested}")
    if PROVIDERS[requested] not in available:
        have = ", ".join(name for name, ep in PROVIDERS.items() if ep in available) or "none"
        raise ProviderUnavailable(
            f"the {requested} execution provider is not available in this onnxruntime (available: {have}); "
            "install onnxruntime-gpu with matching CUDA/TensorRT libraries, or use --provider cpu"
        )
    return requested


def _session_providers(provider: str, precision: str | None, device_id: int) -> list:
    """ORT's provider list: the chosen one first, then what runs the nodes it does not take."""
    cuda = (PROVIDERS["cuda"], {"device_id": device_id})
    if provider == "tensorrt":
        cache = Path.home() / ".cache" / "uner" / "tensorrt"  # engines take minutes to build: keep them
        options = {
            "device_id": device_id,
            "trt_fp16_enable": precision == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        }
        return [(PROVIDERS["tensorrt"], options), cuda, PROVIDERS["cpu"]]
    if provider == "cuda":
        return [cuda, PROVIDERS["cpu"]]
    return [PROVIDERS["cpu"]]


@dataclass(frozen=True)
class DecoderIO:
    """The names and shapes of a decoder-with-past graph, read from the session."""

    past: tuple[str, ...]
    present: tuple[str, ...]
    kv_dtype: type
    kv_heads: int
    head_dim: int
    position_ids: bool
    use_cache_branch: bool
    #: the branch graph's inputs (toolkit/onnx_graph_edits.py): an attention bias and the
    #: positions whose logits come back, so one call can encode several suffixes of one row
    suffix_batching: bool = False

    @classmethod
    def from_session(cls, session, layout: OnnxLayout) -> DecoderIO:
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        missing = [n for n in ("input_ids", "attention_mask") if n not in inputs] + (
            ["logits"] if "logits" not in outputs else []
        )
        past = tuple(n for n in inputs if n.startswith(_PAST_PREFIX))
        if missing or not past:
            what = ", ".join(missing + ([] if past else ["past_key_values.* (a KV-cache export)"]))
            raise ModelNotFound(f"expected a decoder with {what} in {layout.model_file}")
        present = tuple(_PRESENT_PREFIX + n.removeprefix(_PAST_PREFIX) for n in past)
        if absent := [n for n in present if n not in outputs]:
            raise ModelNotFound(f"expected outputs {', '.join(absent)} in {layout.model_file}")
        kv = inputs[past[0]]
        kv_type = _NUMPY_TYPES.get(kv.type)
        if kv_type is None:
            raise ModelNotFound(f"expected a float or float16 KV cache, got {kv.type} in {layout.model_file}")
        heads, head_dim = _kv_shape(kv.shape, layout.folder)
        batching = "attention_bias" in inputs and "logit_positions" in inputs
        return cls(
            past, present, kv_type, heads, head_dim, "position_ids" in inputs, "use_cache_branch" in inputs, batching
        )


def _kv_shape(shape: list, folder: Path) -> tuple[int, int]:
    """KV heads and head size: from the graph when static, else from the folder's configs."""
    heads, head_dim = shape[1], shape[3]
    if isinstance(heads, int) and isinstance(head_dim, int):
        return heads, head_dim
    decoder = read_json(folder / "genai_config.json").get("model", {}).get("decoder", {})
    config = read_json(folder / "config.json")
    n_heads = decoder.get("num_attention_heads") or config.get("num_attention_heads")
    if not isinstance(heads, int):
        heads = decoder.get("num_key_value_heads") or config.get("num_key_value_heads") or n_heads
    if not isinstance(head_dim, int):
        head_dim = (
            decoder.get("head_size")
            or config.get("head_dim")
            or (config["hidden_size"] // n_heads if n_heads and "hidden_size" in config else None)
        )
    if not heads or not head_dim:
        raise ModelNotFound(f"expected genai_config.json or config.json giving the KV-cache shape in {folder}")
    return int(heads), int(head_dim)


class OnnxExtractor(GenerativeExtractor):
    """UniNER on ONNX Runtime.

    Args:
        path: an ONNX export folder (ours, onnxruntime-genai's or optimum's) or its ``.onnx`` file.
        provider: ``auto`` (tensorrt -> cuda -> cpu, as available) or one of them, forced.
        n_threads: intra-op CPU threads; ``None`` lets ONNX Runtime use all cores.
        max_batch_rows: answers decoded at once (rows of a step), every text's together; a
            text joins the running batch when all its types fit beside it. More rows amortize
            the weights read per step (a server with many clients), at the cost of memory.
        device_id: GPU index for cuda/tensorrt.
        **options: decoding options of :class:`GenerativeExtractor` (``max_new_tokens``...).
    """

    name = "onnx"

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "auto",
        n_threads: int | None = None,
        max_batch_rows: int = DEFAULT_MAX_BRANCHES,
        device_id: int = 0,
        **options,
    ) -> None:
        super().__init__(**options)
        if n_threads is not None:
            check_threads(n_threads)
        if isinstance(max_batch_rows, bool) or not isinstance(max_batch_rows, int) or max_batch_rows < 1:
            raise InputError(f"expected max_batch_rows >= 1, got {max_batch_rows!r}")
        self.max_batch_rows = max_batch_rows
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("onnx", "onnxruntime", "onnx") from exc
        self._ort = ort
        self.layout = read_layout(path)
        self.provider = choose_provider(provider, self.layout.precision, ort.get_available_providers())
        if self.provider not in self.layout.providers:
            logger.warning(
                "this %s export is built for %s; running it on %s",
                self.layout.precision,
                "/".join(self.layout.providers),
                self.provider,
            )
        self._device = ("cpu", 0) if self.provider == "cpu" else ("cuda", device_id)
        self.session = self._open_session(ort, n_threads, device_id)
        self.io = DecoderIO.from_session(self.session, self.layout)
        self._tokenizer = FolderTokenizer(self.layout.folder, "onnx", "onnx")
        self.eos_id = self._tokenizer.eos_id
        self.bos_id = self._tokenizer.bos_id
        self.context_length = self.layout.context_length

    def _open_session(self, ort, n_threads: int | None, device_id: int):
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's per-node warnings are noise for users
        if n_threads is not None:
            options.intra_op_num_threads = check_threads(n_threads)
        providers = _session_providers(self.provider, self.layout.precision, device_id)
        try:
            session = ort.InferenceSession(str(self.layout.model_file), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for unreadable/missing files
            raise ModelNotFound(
                f"expected a loadable ONNX model at {self.layout.model_file}, got: {first_line(exc)}"
            ) from exc
        if session.get_providers()[0] != PROVIDERS[self.provider]:
            raise ProviderUnavailable(
                f"onnxruntime could not start the {self.provider} execution provider (it fell back to "
                f"{session.get_providers()[0]}); check the CUDA/TensorRT libraries, or use --provider cpu"
            )
        return session

    def encode(self, text: str) -> list[int]:
        self._check_open()
        return self._tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(ids)

    def token_bytes(self, token: int) -> bytes:
        return self._tokenizer.token_bytes(token)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.vocab_size

    def empty_past(self, rows: int = 1) -> list:
        """An empty KV cache of ``rows`` rows on this session's device."""
        empty = np.zeros((rows, self.io.kv_heads, 0, self.io.head_dim), dtype=self.io.kv_dtype)
        value = self._ort.OrtValue.ortvalue_from_numpy(empty, *self._device)
        return [value] * len(self.io.past)

    def kv_value(self, array: np.ndarray):
        """A host array as a KV-cache input on this session's device."""
        return self._ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(array, dtype=self.io.kv_dtype), *self._device
        )

    def forward(
        self,
        input_ids: np.ndarray,
        mask: np.ndarray,
        positions: np.ndarray,
        past: list,
        bias: np.ndarray | None = None,
        logit_positions: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, list]:
        """One pass over ``input_ids`` ``[rows, new]`` after ``past``: float32 logits of each row's
        last token ``[rows, vocab]`` and the new KV cache (on the session's device).

        ``mask`` ``[rows, past + new]`` marks the cache entries each row attends to;
        ``positions`` ``[rows, new]`` are the new tokens' positions. Graphs with
        ``io.suffix_batching`` also take ``bias`` ``[1, 1, new, past + new]`` (added to the
        attention scores; zeros when ``None``) and ``logit_positions`` (of a single row: the
        logits ``[len, vocab]`` of these new-token indices instead)."""
        self._check_open()
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(mask, dtype=np.int64))
        if self.io.position_ids:
            binding.bind_cpu_input("position_ids", np.ascontiguousarray(positions, dtype=np.int64))
        if self.io.suffix_batching:
            if bias is None:
                bias = np.zeros((1, 1, input_ids.shape[1], mask.shape[1]), dtype=self.io.kv_dtype)
            binding.bind_cpu_input("attention_bias", np.ascontiguousarray(bias, dtype=self.io.kv_dtype))
            wanted = [-1] if logit_positions is None else list(logit_positions)
            binding.bind_cpu_input("logit_positions", np.array(wanted, dtype=np.int64))
        if self.io.use_cache_branch:
            binding.bind_cpu_input("use_cache_branch", np.array([mask.shape[1] > input_ids.shape[1]]))
        for name, value in zip(self.io.past, past):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.io.present:
            binding.bind_output(name, *self._device)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()
        rows = logits[:, -1] if logit_positions is None else logits[0]
        return rows.astype(np.float32, copy=False), outputs[1:]

    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        """The per-query path: the whole prompt, then one token per step."""
        self._check_open()
        count, started = len(prompt_ids), time.perf_counter()
        logits, past = self.forward(
            np.array([prompt_ids]), np.ones((1, count)), np.arange(count)[None], self.empty_past()
        )
        self.last_prefill_seconds = time.perf_counter() - started
        position = count

        def step(token: int) -> np.ndarray:
            nonlocal past, position
            position += 1
            row, past = self.forward(np.array([[token]]), np.ones((1, position)), np.array([[position - 1]]), past)
            return row[0]

        return greedy_continuation(logits[0], step, self.eos_id, self.max_new_tokens, self.new_guard())

    def branch_pool(self) -> OnnxBranches:
        """A pool for one engine run: nothing a failed run left can reach the next."""
        self._check_open()
        return OnnxBranches(self, self.max_batch_rows)

    def _release(self) -> None:
        self.session = None
