"""The llama.cpp backend: runs GGUF files, quantized or not, without torch.

It drives llama.cpp's C API (through llama-cpp-python's bindings) directly: one context whose
KV cache is shared by several sequences, so that one text's prompt prefix is decoded once and
every entity type continues from it (``llama_memory_seq_cp``) in one batch.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtimes.base import GenerativeExtractor
from runtimes.errors import BackendUnavailable, InputError, ModelNotFound

GGUF_MAGIC = b"GGUF"
DEFAULT_CONTEXT = 4096
#: branches one context decodes at once (besides the per-query sequence and a prefix holder)
MAX_SEQUENCES = 64
_KV_TYPES = {"f16": "GGML_TYPE_F16", "f32": "GGML_TYPE_F32"}
_GENERATE_SEQ = 0


def is_gguf(path: str | Path) -> bool:
    """True when ``path`` is a file starting with the GGUF magic."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


class _Batch:
    """A reusable ``llama_batch`` of at most ``size`` tokens, one sequence id per token."""

    def __init__(self, llama_cpp, size: int) -> None:
        self._llama_cpp = llama_cpp
        self.size = size
        self.raw = llama_cpp.llama_batch_init(size, 0, 1)

    def fill(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], wants_logits: Sequence[bool]) -> None:
        raw = self.raw
        raw.n_tokens = len(tokens)
        for i, (token, pos, seq, logits) in enumerate(zip(tokens, positions, seqs, wants_logits)):
            raw.token[i] = token
            raw.pos[i] = pos
            raw.n_seq_id[i] = 1
            raw.seq_id[i][0] = seq
            raw.logits[i] = logits

    def free(self) -> None:
        if self.raw is not None:
            self._llama_cpp.llama_batch_free(self.raw)
            self.raw = None


class LlamaCppExtractor(GenerativeExtractor):
    """UniNER on llama.cpp, greedy decoding over the raw logits.

    Args:
        path: a ``.gguf`` file.
        n_ctx: KV-cache cells shared by all sequences (default 4096). One prompt plus its
            answer may use at most the model's training context (capped at ``n_ctx``); entity
            types whose answers might not all fit at once run in several batches.
        n_threads: CPU threads; defaults to the number of cores.
        n_gpu_layers: layers to offload when llama.cpp was built with a GPU backend.
        kv_cache_type: ``"f16"`` (llama.cpp's default) or ``"f32"``; parity checks of F32
            files use f32 so that only the converter is under test.
        parallel_texts: texts whose branches may decode at once. 1 on CPU by default: llama.cpp
            attends over every cell in use, so other texts' cells slow each token down more than
            sharing steps saves (uniner-smol Q4_K_M, 2 cores: 11.0 queries/s with 1, 9.0 with
            up to 5); a GPU, where a step costs about the same for more rows, wants more.
        **options: decoding options of :class:`GenerativeExtractor` (``max_new_tokens``...).
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
        parallel_texts: int = 1,
        **options,
    ) -> None:
        super().__init__(**options)
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendUnavailable("llamacpp", "llama-cpp-python", "llamacpp") from exc
        if not is_gguf(path):
            raise ModelNotFound(f"expected a GGUF file, got {path}")
        if kv_cache_type not in _KV_TYPES:
            raise InputError(f"expected kv_cache_type among {', '.join(_KV_TYPES)}, got {kv_cache_type!r}")
        self._llama_cpp = llama_cpp
        self._model = self._ctx = self._batch = None
        llama_cpp.llama_backend_init()
        route_llama_logs(llama_cpp)
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        self._offloaded = n_gpu_layers != 0
        if parallel_texts < 1:
            raise InputError(f"expected parallel_texts >= 1, got {parallel_texts}")
        self._parallel_texts = parallel_texts
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ModelNotFound(f"expected a GGUF file llama.cpp can load, got {path}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        trained = llama_cpp.llama_model_n_ctx_train(self._model)
        # 4096 cells by default: SmolLM2's 8192-token training context would cost memory for
        # nothing, while a 2048-context 7B gets room to decode a text's types side by side.
        self._cells = n_ctx or DEFAULT_CONTEXT
        self.context_length = min(trained, self._cells)
        try:
            self._ctx = self._new_context(n_threads or os.cpu_count() or 1, getattr(llama_cpp, _KV_TYPES[kv_cache_type]))
        except ModelNotFound:
            self._release()
            raise
        self._n_batch = llama_cpp.llama_n_batch(self._ctx)
        self._batch = _Batch(llama_cpp, self._n_batch)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.eos_id = llama_cpp.llama_vocab_eos(self._vocab)
        self.bos_id = llama_cpp.llama_vocab_bos(self._vocab) if llama_cpp.llama_vocab_get_add_bos(self._vocab) else None
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        # branch pool state: free sequence ids (0 is the per-query path's), next position and
        # reserved cells of each running branch, prefix cells of each group of branches
        self._free_seqs = list(range(self._n_seq_max - 1, 0, -1))
        self._position: dict[int, int] = {}
        self._reserved: dict[int, int] = {}
        self._group_of: dict[int, int] = {}
        self._group_cells: dict[int, int] = {}
        self._next_group = 0

    def _new_context(self, n_threads: int, kv_type: int):
        llama_cpp = self._llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self._cells
        params.n_batch = params.n_ubatch = min(512, self._cells)
        params.n_seq_max = self._n_seq_max = min(MAX_SEQUENCES + 2, llama_cpp.llama_max_parallel_sequences())
        params.kv_unified = True  # every sequence may use any cell: the prefix is stored once
        params.n_threads = params.n_threads_batch = n_threads
        params.type_k = params.type_v = kv_type
        params.no_perf = True
        # flash attention is llama.cpp's choice on GPUs; on CPU it was slower for our batches
        # (11.8 vs 10.2 queries/s, uniner-smol Q4_K_M, 2 cores)
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO if self._offloaded else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise ModelNotFound(f"expected llama.cpp to create a context of {self._cells} tokens, it could not (out of memory?)")
        return ctx

    # -- tokens ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        buffer = (self._llama_cpp.llama_token * size)()
        count = self._llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, False, False)
        if count < 0:  # never for plain text (a token covers at least one byte); kept for safety
            buffer = (self._llama_cpp.llama_token * -count)()
            count = self._llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, -count, False, False)
        return list(buffer[:count])

    def token_bytes(self, token: int) -> bytes:
        """The bytes ``token`` adds to the generated text (empty for control tokens)."""
        buffer = ctypes.create_string_buffer(64)
        count = self._llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if count < 0:
            buffer = ctypes.create_string_buffer(-count)
            count = self._llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -count, 0, False)
        return buffer.raw[:count]

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.token_bytes(token) for token in ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    # -- running the context ----------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], wants_logits: Sequence[bool]) -> np.ndarray:
        """Run tokens through the model in chunks of the batch size; logits ``[wanted, vocab]``
        of the tokens that asked for them, in order (copied: the next decode overwrites them)."""
        rows = np.empty((sum(map(bool, wants_logits)), self._n_vocab), dtype=np.float32)
        filled = 0
        for start in range(0, len(tokens), self._n_batch):
            chunk = slice(start, start + self._n_batch)
            self._batch.fill(tokens[chunk], positions[chunk], seqs[chunk], wants_logits[chunk])
            status = self._llama_cpp.llama_decode(self._ctx, self._batch.raw)
            if status != 0:
                reason = f"its KV cache of {self._cells} cells is full; pass a larger n_ctx" if status == 1 else f"status {status}"
                raise InputError(f"expected llama.cpp to decode a batch of {len(tokens)} tokens, it could not: {reason}")
            for index, wanted in enumerate(wants_logits[chunk]):
                if wanted:
                    pointer = self._llama_cpp.llama_get_logits_ith(self._ctx, index)
                    rows[filled] = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
                    filled += 1
        return rows

    def _forget_prefix_of_generate(self) -> None:
        self._llama_cpp.llama_memory_seq_rm(self._memory, _GENERATE_SEQ, -1, -1)

    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        """The per-query path: the whole prompt on its own, then one token per step."""
        if self._position:
            raise InputError("expected no branches running while generating per query")
        self._llama_cpp.llama_memory_clear(self._memory, False)  # metadata only: cells are rewritten
        started = time.perf_counter()
        count = len(prompt_ids)
        logits = self._decode(prompt_ids, range(count), [_GENERATE_SEQ] * count, [False] * (count - 1) + [True])[0]
        self.last_prefill_seconds = time.perf_counter() - started
        generated: list[int] = []
        for position in range(count, count + self.max_new_tokens):
            token = int(np.argmax(logits))
            if token == self.eos_id:
                break
            generated.append(token)
            logits = self._decode([token], [position], [_GENERATE_SEQ], [True])[0]
        return generated

    # -- the branch pool (runtimes.engine.BranchPool) ------------------------------------------

    def branch_pool(self) -> LlamaCppExtractor:
        return self

    def room(self, prefix_len: int, suffix_lens: Sequence[int], max_new_tokens: int) -> int:
        """Branches that fit now: each reserves its suffix and ``max_new_tokens`` cells (its
        worst case, so a running branch can never find the cache full), the prefix once."""
        if len(self._group_cells) >= self._parallel_texts:
            return 0
        free = self._cells - sum(self._group_cells.values()) - sum(self._reserved.values()) - prefix_len
        seqs = len(self._free_seqs) - 1  # one id holds the prefix while it is copied
        fits = 0
        for length in suffix_lens[:max(0, seqs)]:
            free -= length + max_new_tokens
            if free < 0:
                break
            fits += 1
        return fits

    def add(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]]) -> tuple[list[int], np.ndarray]:
        self._forget_prefix_of_generate()
        holder = self._free_seqs.pop()
        count = len(prefix)
        self._decode(prefix, range(count), [holder] * count, [False] * count)
        branches = [self._free_seqs.pop() for _ in suffixes]
        tokens, positions, seqs, wants = [], [], [], []
        for seq, suffix in zip(branches, suffixes):
            self._llama_cpp.llama_memory_seq_cp(self._memory, holder, seq, -1, -1)
            tokens += suffix
            positions += range(count, count + len(suffix))
            seqs += [seq] * len(suffix)
            wants += [False] * (len(suffix) - 1) + [True]
            self._position[seq] = count + len(suffix)
            self._reserved[seq] = len(suffix) + self.max_new_tokens
        self._llama_cpp.llama_memory_seq_rm(self._memory, holder, -1, -1)  # the branches keep the cells
        self._free_seqs.append(holder)
        group = self._next_group
        self._next_group += 1
        self._group_cells[group] = count
        self._group_of.update({seq: group for seq in branches})
        return branches, self._decode(tokens, positions, seqs, wants)

    def step(self, branches: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        positions = [self._position[seq] for seq in branches]
        for seq in branches:
            self._position[seq] += 1
        return self._decode(tokens, positions, branches, [True] * len(tokens))

    def drop(self, branch: int) -> None:
        self._llama_cpp.llama_memory_seq_rm(self._memory, branch, -1, -1)
        del self._position[branch], self._reserved[branch]
        group = self._group_of.pop(branch)
        if group not in self._group_of.values():
            del self._group_cells[group]  # its last branch is gone: so are the prefix cells
        self._free_seqs.append(branch)
        if not self._position:
            # an empty cache restarts at cell 0: llama.cpp attends over every cell up to the
            # highest one in use, so letting new sequences drift up the cache costs time
            self._llama_cpp.llama_memory_clear(self._memory, False)

    def _release(self) -> None:
        llama_cpp = self._llama_cpp
        if self._batch is not None:
            self._batch.free()
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None


_log_callback = None  # kept referenced: llama.cpp holds a raw pointer to it


def route_llama_logs(llama_cpp) -> None:
    """Send llama.cpp's log lines (every loaded tensor...) to the ``llama.cpp`` debug log
    instead of stderr; users see progress bars and the errors we raise."""
    global _log_callback
    if _log_callback is None:
        llama_logger = logging.getLogger("llama.cpp")

        @llama_cpp.llama_log_callback
        def forward(level, text, user_data):
            llama_logger.debug(text.decode("utf-8", errors="replace").rstrip())

        _log_callback = forward
        llama_cpp.llama_log_set(_log_callback, None)
