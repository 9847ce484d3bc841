"""The reference backend: transformers + PyTorch, plain greedy ``generate`` per query.

Tokenization is :mod:`uner.tokenizer` (SentencePiece for LLaMA, as UniNER was trained),
shared with the ONNX backend, so both build the same prompt ids.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from uner.base import GenerativeExtractor
from uner.checks import check_threads
from uner.errors import BackendUnavailable, InputError, ModelNotFound, describe_error
from uner.tokenizer import FolderTokenizer
from uner.torch_branches import DEFAULT_MAX_BRANCHES, TorchBranches

_DTYPES = ("float32", "float16", "bfloat16")


class _FirstTokenClock:
    """A ``generate`` streamer that only notes when the first new token arrives."""

    def __init__(self) -> None:
        self._calls = 0
        self._started = time.perf_counter()
        self.prefill_seconds: float | None = None

    def put(self, _ids) -> None:
        self._calls += 1  # the first call carries the prompt, the second the first new token
        if self._calls == 2:
            self.prefill_seconds = time.perf_counter() - self._started

    def end(self) -> None:
        if self.prefill_seconds is None:
            self.prefill_seconds = time.perf_counter() - self._started


class TorchExtractor(GenerativeExtractor):
    """UniNER on transformers: the reference every exported variant is compared with.

    Args:
        path: a Hugging Face model folder (``config.json``, weights, tokenizer).
        dtype: compute dtype; float32 is the reference on CPU. ``"auto"``: float16 on a GPU,
            float32 on CPU.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``; ``"auto"``: cuda when available.
        max_batch_rows: answers decoded at once (rows of a step), every text's together; a
            text joins the running batch when all its types fit beside it. More rows amortize
            the weights read per step (a server with many clients), at the cost of memory.
        n_threads: CPU threads for torch; ``None`` keeps torch's default.
        **options: decoding options of :class:`GenerativeExtractor` (``max_new_tokens``...).
    """

    name = "torch"

    def __init__(
        self,
        path: str | Path,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        n_threads: int | None = None,
        max_batch_rows: int = DEFAULT_MAX_BRANCHES,
        allow_pickle: bool = False,
        **options,
    ) -> None:
        super().__init__(**options)
        if n_threads is not None:
            check_threads(n_threads)
        if isinstance(max_batch_rows, bool) or not isinstance(max_batch_rows, int) or max_batch_rows < 1:
            raise InputError(f"expected max_batch_rows >= 1, got {max_batch_rows!r}")
        self.max_batch_rows = max_batch_rows
        try:
            import torch
            from transformers import AutoModelForCausalLM, GenerationConfig
        except ImportError as exc:
            raise BackendUnavailable("torch", "transformers", "torch") from exc
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelNotFound(f"expected a Hugging Face model folder with config.json, got {folder}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "float32" if device == "cpu" else "float16"
        if dtype not in _DTYPES:
            raise ModelNotFound(f"expected dtype one of auto, {', '.join(_DTYPES)}, got {dtype}")
        pickled = not any(folder.glob("*.safetensors"))
        if pickled and not allow_pickle:
            raise InputError(
                f"expected safetensors weights in {folder}, got none: pytorch_model*.bin is a pickle (loading it runs "
                "code); "
                "pass --allow-pickle (allow_pickle=True) for files you trust"
            )
        self._torch = torch
        self._threads = n_threads
        self.device = device
        with self.threads():
            try:
                self.model = AutoModelForCausalLM.from_pretrained(
                    folder, dtype=getattr(torch, dtype), use_safetensors=not pickled
                )
            except (
                OSError,
                ValueError,
                RuntimeError,
                KeyError,
                TypeError,
            ) as exc:  # corrupt or mismatched weights, bad config values
                raise ModelNotFound(
                    f"expected a model transformers can load from {folder}, got {describe_error(exc)}"
                ) from None
        self.model.to(device).eval()
        self._tokenizer = FolderTokenizer(folder, "torch", "torch")
        self.eos_id = self._tokenizer.eos_id
        self.bos_id = self._tokenizer.bos_id
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._generation = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.eos_id,
            pad_token_id=self.eos_id,
        )

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

    @contextlib.contextmanager
    def threads(self) -> Iterator[None]:
        """torch's thread count is process-wide: set ours for one forward pass and restore it,
        so it never leaks to the caller's own torch code or to another extractor."""
        if self._threads is None:
            yield
            return
        before = self._torch.get_num_threads()
        self._torch.set_num_threads(self._threads)
        try:
            yield
        finally:
            self._torch.set_num_threads(before)

    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        self._check_open()
        torch = self._torch
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        clock = _FirstTokenClock()
        with torch.inference_mode(), self.threads():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self._generation,
                streamer=clock,
                stopping_criteria=self._stopping(),
            )
        self.last_prefill_seconds = clock.prefill_seconds
        new = output[0, input_ids.shape[1] :].tolist()
        return new[: new.index(self.eos_id)] if self.eos_id in new else new

    def _stopping(self):
        """The loop guard as a ``generate`` stopping criterion (none when the guard is off)."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        guard, torch, eos = self.new_guard(), self._torch, self.eos_id
        if guard is None:
            return StoppingCriteriaList()

        class GuardCriterion(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                token = int(input_ids[0, -1])  # called after each new token; EOS ends generate itself
                return torch.tensor([token != eos and guard.feed(token) is not None], device=input_ids.device)

        return StoppingCriteriaList([GuardCriterion()])

    def branch_pool(self) -> TorchBranches:
        """A pool for one engine run: nothing a failed run left can reach the next."""
        self._check_open()
        return TorchBranches(self, self.max_batch_rows)

    def _release(self) -> None:
        self.model = None
