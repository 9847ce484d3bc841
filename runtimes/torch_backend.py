"""The reference backend: transformers + PyTorch, plain greedy ``generate`` per query."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from runtimes.base import DEFAULT_MAX_NEW_TOKENS, GenerativeExtractor
from runtimes.errors import BackendUnavailable, ModelNotFound

_DTYPES = ("float32", "float16", "bfloat16")


class _SentencePieceText:
    """Plain-text tokenization with SentencePiece itself, as UniNER's training did.

    transformers 5's LlamaTokenizer is a `tokenizers` port that splits runs of spaces
    differently from SentencePiece; the slow tokenizer UniNER was trained with was
    SentencePiece, so the reference uses it directly when ``tokenizer.model`` is present.
    """

    def __init__(self, model_file: Path) -> None:
        try:
            import sentencepiece
        except ImportError as exc:
            raise BackendUnavailable("torch", "sentencepiece", "torch") from exc
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))


def _is_sentencepiece_llama(folder: Path) -> bool:
    if not (folder / "tokenizer.model").is_file():
        return False
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return True
    tokenizer_class = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class", "")
    return tokenizer_class.startswith("LlamaTokenizer") or not (folder / "tokenizer.json").is_file()


def _bos_added_by(tokenizer) -> int | None:
    """The BOS id if the tokenizer's own post-processing prepends it, else ``None``."""
    with_special = tokenizer("a").input_ids
    without = tokenizer("a", add_special_tokens=False).input_ids
    if len(with_special) > len(without) and with_special[0] == tokenizer.bos_token_id:
        return tokenizer.bos_token_id
    return None


class TorchExtractor(GenerativeExtractor):
    """UniNER on transformers: the reference every exported variant is compared with.

    Args:
        path: a Hugging Face model folder (``config.json``, weights, tokenizer).
        dtype: compute dtype; float32 is the reference on CPU.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        n_threads: CPU threads for torch; ``None`` keeps torch's default.
    """

    name = "torch"

    def __init__(
        self,
        path: str | Path,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        n_threads: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        super().__init__(max_new_tokens)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
        except ImportError as exc:
            raise BackendUnavailable("torch", "transformers", "torch") from exc
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelNotFound(f"expected a Hugging Face model folder with config.json, got {folder}")
        if dtype not in _DTYPES:
            raise ModelNotFound(f"expected dtype one of {', '.join(_DTYPES)}, got {dtype}")
        if n_threads:
            torch.set_num_threads(n_threads)
        self._torch = torch
        self._device = device
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        hf_tokenizer = AutoTokenizer.from_pretrained(folder)
        self._text = _SentencePieceText(folder / "tokenizer.model") if _is_sentencepiece_llama(folder) else None
        self.eos_id = hf_tokenizer.eos_token_id
        self.bos_id = _bos_added_by(hf_tokenizer)
        self._hf_tokenizer = hf_tokenizer
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._generation = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_id,
            pad_token_id=self.eos_id,
        )

    def encode(self, text: str) -> list[int]:
        if self._text is not None:
            return self._text.encode(text)
        return self._hf_tokenizer(text, add_special_tokens=False).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        if self._text is not None:
            return self._text.decode(ids)
        return self._hf_tokenizer.decode(list(ids), skip_special_tokens=True)

    def generate(self, prompt_ids: Sequence[int]) -> list[int]:
        torch = self._torch
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self._device)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self._generation,
            )
        new = output[0, input_ids.shape[1] :].tolist()
        return new[: new.index(self.eos_id)] if self.eos_id in new else new

    def _release(self) -> None:
        self.model = None
