"""The llama.cpp backend: runs GGUF files, quantized or not, without torch.

It drives llama.cpp's C API (through llama-cpp-python's bindings) directly: one context whose
KV cache is shared by several sequences, so that one text's prompt prefix is decoded once and
every entity type continues from it (``llama_memory_seq_cp``) in one batch.
"""

from __future__ import annotations

import ctypes
import logging
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uner.base import GenerativeExtractor
from uner.checks import check_threads, encode_utf8
from uner.engine import greedy_continuation
from uner.errors import BackendUnavailable, InputError, ModelNotFound, UnerError
from uner.llamacpp_branches import LlamaCppBranches

GGUF_MAGIC = b"GGUF"
DEFAULT_CONTEXT = 4096
#: branches one context decodes at once (besides the per-query sequence, a prefix holder and the stem)
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

    def fill(
        self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], wants_logits: Sequence[bool]
    ) -> None:
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


class _Handles:
    """The C objects of one extractor, freed once: by ``close()``, or when it is collected."""

    def __init__(self, llama_cpp) -> None:
        self.llama_cpp = llama_cpp
        self.model = self.ctx = None
        self.batch: _Batch | None = None

    def free(self) -> None:
        if self.batch is not None:
            self.batch.free()
            self.batch = None
        if self.ctx:
            self.llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.llama_cpp.llama_model_free(self.model)
            self.model = None


def set_fields(params, **values) -> None:
    """Set fields of a ctypes struct, refusing names the binding lacks: ctypes accepts any
    attribute silently, so a misspelled or renamed field would otherwise be ignored."""
    known = {name for name, *_ in type(params)._fields_}
    if missing := sorted(set(values) - known):
        fields = ", ".join(f"{type(params).__name__}.{name}" for name in missing)
        raise BackendUnavailable(
            "llamacpp", "llama-cpp-python", "llamacpp", reason=f"its llama-cpp-python binding has no {fields}"
        )
    for name, value in values.items():
        setattr(params, name, value)


def amx_in_use(llama_cpp) -> bool:
    """True when this llama.cpp build repacks weights for Intel AMX. Its AMX matmul segfaults
    on the first decode of a Q4_K_M file on Sapphire-Rapids-class CPUs (llama.cpp#20824; seen
    here: every quantized uniner-smol file crashed), so such builds load weights without the
    extra (repacked) buffer types, which costs a little speed and nothing else."""
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")


def gguf_file_type(llama_cpp, model) -> int | None:
    """``general.file_type`` of a loaded model (0 = all F32), or ``None`` when absent."""
    buffer = ctypes.create_string_buffer(32)
    if llama_cpp.llama_model_meta_val_str(model, b"general.file_type", buffer, 32) < 0:
        return None
    try:
        return int(buffer.value)
    except ValueError:
        return None


class LlamaCppExtractor(GenerativeExtractor):
    """UniNER on llama.cpp, greedy decoding over the raw logits.

    One extractor may be shared by threads: its calls take turns (see
    :class:`~uner.base.GenerativeExtractor`). After :meth:`close` every call raises
    :class:`~uner.errors.ExtractorClosed`; one dropped without ``close`` frees its model when
    it is collected.

    Args:
        path: a ``.gguf`` file.
        n_ctx: KV-cache cells shared by all sequences (default 4096). One prompt plus its
            answer may use at most the model's training context (capped at ``n_ctx``); entity
            types whose answers might not all fit at once run in several batches.
        n_threads: CPU threads; defaults to the number of cores.
        n_gpu_layers: layers to offload when llama.cpp was built with a GPU backend.
        kv_cache_type: ``"f16"`` (llama.cpp's default), ``"f32"``, or ``"auto"`` (default):
            f32 for an F32 file, whose user asked for exactness (llama.cpp's F16 cache rounds
            keys and values, which flips near-ties after a dozen tokens), else f16.
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
        kv_cache_type: str = "auto",
        parallel_texts: int = 1,
        **options,
    ) -> None:
        super().__init__(**options)
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendUnavailable("llamacpp", "llama-cpp-python", "llamacpp") from exc
        if not is_gguf(path):
            raise ModelNotFound(f"expected a GGUF file (starting with the GGUF magic), got {path}")
        if kv_cache_type not in (*_KV_TYPES, "auto"):
            raise InputError(f"expected kv_cache_type among auto, {', '.join(_KV_TYPES)}, got {kv_cache_type!r}")
        if parallel_texts < 1:
            raise InputError(f"expected parallel_texts >= 1, got {parallel_texts}")
        n_threads = check_threads(n_threads)
        self._llama_cpp = llama_cpp
        self._handles = handles = _Handles(llama_cpp)
        self._finalizer = weakref.finalize(self, handles.free)
        llama_cpp.llama_backend_init()
        route_llama_logs(llama_cpp)
        model_params = llama_cpp.llama_model_default_params()
        set_fields(model_params, n_gpu_layers=n_gpu_layers, use_extra_bufts=not amx_in_use(llama_cpp))
        self._offloaded = n_gpu_layers != 0
        self.parallel_texts = parallel_texts
        handles.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not handles.model:
            self.close()
            raise ModelNotFound(f"expected a GGUF file llama.cpp can load, got {path} (see UNER_DEBUG=1 for its log)")
        if kv_cache_type == "auto":
            kv_cache_type = "f32" if gguf_file_type(llama_cpp, handles.model) == 0 else "f16"
        self.kv_cache_type = kv_cache_type
        self._vocab = llama_cpp.llama_model_get_vocab(handles.model)
        trained = llama_cpp.llama_model_n_ctx_train(handles.model)
        # 4096 cells by default: SmolLM2's 8192-token training context would cost memory for
        # nothing, while a 2048-context 7B gets room to decode a text's types side by side.
        self.cells = n_ctx or DEFAULT_CONTEXT
        self.context_length = min(trained, self.cells)
        try:
            handles.ctx = self._new_context(n_threads, getattr(llama_cpp, _KV_TYPES[kv_cache_type]))
        except UnerError:
            self.close()
            raise
        self._n_batch = llama_cpp.llama_n_batch(handles.ctx)
        handles.batch = _Batch(llama_cpp, self._n_batch)
        self._memory = llama_cpp.llama_get_memory(handles.ctx)
        self.eos_id = llama_cpp.llama_vocab_eos(self._vocab)
        self.bos_id = llama_cpp.llama_vocab_bos(self._vocab) if llama_cpp.llama_vocab_get_add_bos(self._vocab) else None
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)

    def _new_context(self, n_threads: int, kv_type: int):
        llama_cpp = self._llama_cpp
        params = llama_cpp.llama_context_default_params()
        self.n_seq_max = min(MAX_SEQUENCES + 3, llama_cpp.llama_max_parallel_sequences())
        self.stem_seq = self.n_seq_max - 1  # holds the prompt stem's cells across texts and runs
        # flash attention is llama.cpp's choice on GPUs; on CPU it was slower for our batches
        # (11.8 vs 10.2 queries/s, uniner-smol Q4_K_M, 2 cores)
        flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO if self._offloaded else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        set_fields(
            params,
            n_ctx=self.cells,
            n_batch=min(512, self.cells),
            n_ubatch=min(512, self.cells),
            n_seq_max=self.n_seq_max,
            kv_unified=True,  # every sequence may use any cell: the prefix is stored once
            n_threads=n_threads,
            n_threads_batch=n_threads,
            type_k=kv_type,
            type_v=kv_type,
            no_perf=True,
            flash_attn_type=flash,
        )
        ctx = llama_cpp.llama_init_from_model(self._handles.model, params)
        if not ctx:
            raise ModelNotFound(
                f"expected llama.cpp to create a context of {self.cells} tokens, it could not (out of memory?)"
            )
        return ctx

    @property
    def is_open(self) -> bool:
        return self._handles.model is not None

    def _vocab_handle(self):
        """The vocabulary, checked first: after close() its memory is freed."""
        self._check_open()
        return self._vocab

    # -- tokens ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        # parse_special=False: "</s>" or "<|im_end|>" in user text stays text, never a control id
        vocab = self._vocab_handle()
        data = encode_utf8(text)
        size = len(data) + 8
        buffer = (self._llama_cpp.llama_token * size)()
        count = self._llama_cpp.llama_tokenize(vocab, data, len(data), buffer, size, False, False)
        if count < 0:  # never for plain text (a token covers at least one byte); kept for safety
            buffer = (self._llama_cpp.llama_token * -count)()
            count = self._llama_cpp.llama_tokenize(vocab, data, len(data), buffer, -count, False, False)
        return list(buffer[:count])

    def token_bytes(self, token: int) -> bytes:
        """The bytes ``token`` adds to the generated text (empty for control tokens)."""
        vocab = self._vocab_handle()
        buffer = ctypes.create_string_buffer(64)
        count = self._llama_cpp.llama_token_to_piece(vocab, token, buffer, 64, 0, False)
        if count < 0:
            buffer = ctypes.create_string_buffer(-count)
            count = self._llama_cpp.llama_token_to_piece(vocab, token, buffer, -count, 0, False)
        return buffer.raw[:count]

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.token_bytes(token) for token in ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    # -- running the context (also the branch pool's surface) ------------------------------

    def decode_tokens(
        self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], wants_logits: Sequence[bool]
    ) -> np.ndarray:
        """Run tokens through the model in chunks of the batch size; logits ``[wanted, vocab]``
        of the tokens that asked for them, in order (copied: the next decode overwrites them)."""
        self._check_open()
        ctx, batch = self._handles.ctx, self._handles.batch
        rows = np.empty((sum(map(bool, wants_logits)), self._n_vocab), dtype=np.float32)
        filled = 0
        for start in range(0, len(tokens), self._n_batch):
            chunk = slice(start, start + self._n_batch)
            batch.fill(tokens[chunk], positions[chunk], seqs[chunk], wants_logits[chunk])
            status = self._llama_cpp.llama_decode(ctx, batch.raw)
            if status != 0:
                reason = (
                    f"its KV cache of {self.cells} cells is full; pass a larger n_ctx"
                    if status == 1
                    else f"status {status}"
                )
                raise InputError(
                    f"expected llama.cpp to decode a batch of {len(tokens)} tokens, it could not: {reason}"
                )
            for index, wanted in enumerate(wants_logits[chunk]):
                if wanted:
                    pointer = self._llama_cpp.llama_get_logits_ith(ctx, index)
                    rows[filled] = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
                    filled += 1
        return rows

    def copy_sequence(self, source: int, target: int) -> None:
        """``target`` shares every cell of ``source`` (a branch continuing a prefix)."""
        self._llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def remove_sequence(self, seq: int) -> None:
        self._llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def clear_memory(self) -> None:
        """Empty the KV cache (metadata only: cells are rewritten), the stem's cells included."""
        self._check_open()
        self._llama_cpp.llama_memory_clear(self._memory, False)
        self.stem_kv.clear()

    @property
    def stem_cells(self) -> int:
        """Cells the kept prompt stem holds (0: none)."""
        return self.stem_kv.size

    def keep_only_stem(self) -> None:
        """Forget every sequence but the stem's (or empty the cache when none is kept)."""
        if self.stem_kv.size:
            self._check_open()
            self._llama_cpp.llama_memory_seq_keep(self._memory, self.stem_seq)
        else:
            self.clear_memory()

    def start_from_stem(self, stem: Sequence[int], seq: int) -> int:
        """Give ``seq`` the cells of the prompt stem ``stem`` (decoded first when the cache does
        not hold exactly these ids); the number of positions it then covers."""
        self.stem_kv.fetch(stem, self._decode_stem)
        self.copy_sequence(self.stem_seq, seq)
        return len(stem)

    def _decode_stem(self, stem: Sequence[int]) -> int:
        """Decode ``stem`` into the stem's own sequence (replacing what it held); its cell count."""
        self.remove_sequence(self.stem_seq)
        count = len(stem)
        self.decode_tokens(stem, range(count), [self.stem_seq] * count, [False] * count)
        return count

    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        """The per-query path: the whole prompt on its own, then one token per step."""
        self.clear_memory()
        started = time.perf_counter()
        count = len(prompt_ids)
        wants = [False] * (count - 1) + [True]
        logits = self.decode_tokens(prompt_ids, range(count), [_GENERATE_SEQ] * count, wants)[0]
        self.last_prefill_seconds = time.perf_counter() - started
        position = count

        def step(token: int) -> np.ndarray:
            nonlocal position
            position += 1
            return self.decode_tokens([token], [position - 1], [_GENERATE_SEQ], [True])[0]

        return greedy_continuation(logits, step, self.eos_id, self.max_new_tokens, self.new_guard())

    def branch_pool(self) -> LlamaCppBranches:
        """A pool for one engine run; it owns the KV cache until the run ends."""
        return LlamaCppBranches(self)

    def _release(self) -> None:
        self._finalizer()


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
