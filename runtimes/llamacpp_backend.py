"""The llama.cpp backend (llama-cpp-python): runs GGUF files, quantized or not, without torch."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtimes.base import DEFAULT_MAX_NEW_TOKENS, GenerativeExtractor
from runtimes.errors import BackendUnavailable, InputError, ModelNotFound

GGUF_MAGIC = b"GGUF"
DEFAULT_CONTEXT = 4096
_KV_TYPES = {"f16": "GGML_TYPE_F16", "f32": "GGML_TYPE_F32"}


def is_gguf(path: str | Path) -> bool:
    """True when ``path`` is a file starting with the GGUF magic."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


class LlamaCppExtractor(GenerativeExtractor):
    """UniNER on llama.cpp, greedy decoding over the raw logits.

    Args:
        path: a ``.gguf`` file.
        n_ctx: context size; defaults to the model's training context, capped at 4096.
        n_threads: CPU threads; defaults to the number of cores.
        n_gpu_layers: layers to offload when llama.cpp was built with a GPU backend.
        kv_cache_type: ``"f16"`` (llama.cpp's default) or ``"f32"``; parity checks of F32
            files use f32 so that only the converter is under test.
    """

    name = "llamacpp"

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        kv_cache_type: str = "f16",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        super().__init__(max_new_tokens)
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendUnavailable("llamacpp", "llama-cpp-python", "llamacpp") from exc
        if not is_gguf(path):
            raise ModelNotFound(f"expected a GGUF file, got {path}")
        if kv_cache_type not in _KV_TYPES:
            raise InputError(f"expected kv_cache_type among {', '.join(_KV_TYPES)}, got {kv_cache_type!r}")
        self._llama_cpp = llama_cpp
        options = dict(
            model_path=str(path),
            n_threads=n_threads or os.cpu_count(),
            n_gpu_layers=n_gpu_layers,
            type_k=getattr(llama_cpp, _KV_TYPES[kv_cache_type]),
            type_v=getattr(llama_cpp, _KV_TYPES[kv_cache_type]),
            logits_all=False,
            verbose=False,
        )
        self._llm = llama_cpp.Llama(n_ctx=n_ctx or 0, **options)
        if n_ctx is None and self._llm.n_ctx() > DEFAULT_CONTEXT:
            # The training context of small models (8192 for SmolLM2) costs memory for nothing.
            self._llm.close()
            self._llm = llama_cpp.Llama(n_ctx=DEFAULT_CONTEXT, **options)
        self.context_length = self._llm.n_ctx()
        self.eos_id = self._llm.token_eos()
        self.bos_id = self._llm.token_bos() if self._llm._model.add_bos_token() else None
        self._n_vocab = self._llm.n_vocab()

    def encode(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _last_logits(self) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        self._llm.reset()
        started = time.perf_counter()
        self._llm.eval(list(prompt_ids))
        self.last_prefill_seconds = time.perf_counter() - started
        generated: list[int] = []
        for _ in range(self.max_new_tokens):
            token = int(np.argmax(self._last_logits()))
            if token == self.eos_id:
                break
            generated.append(token)
            self._llm.eval([token])
        return generated

    def _release(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
