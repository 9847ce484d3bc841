"""Tokenization of a model folder without transformers, shared by the torch and ONNX backends.

LLaMA folders with ``tokenizer.model`` are tokenized by SentencePiece itself, as UniNER's
training did: transformers 5's LlamaTokenizer is a `tokenizers` port that splits runs of spaces
differently. Other folders (byte-level BPE such as SmolLM2) use ``tokenizer.json`` through the
`tokenizers` library, the engine transformers runs underneath. Neither needs torch, so an edge
install of the ONNX backend tokenizes exactly like the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from uner.errors import BackendUnavailable, ModelNotFound, first_line
from uner.jsonfile import read_json


def _token_text(value: object) -> str | None:
    """A special token as written in tokenizer_config.json: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def eos_token_text(folder: Path) -> str | None:
    """The end-of-sequence token as text (``</s>``, ``<|im_end|>``...), from a HF folder's configs."""
    folder = Path(folder)
    return _token_text(read_json(folder / "tokenizer_config.json").get("eos_token")) or _token_text(
        read_json(folder / "special_tokens_map.json").get("eos_token")
    )


def is_sentencepiece_llama(folder: Path) -> bool:
    """True when ``folder`` holds a LLaMA SentencePiece tokenizer (rather than a BPE tokenizer.json)."""
    if not (folder / "tokenizer.model").is_file():
        return False
    config = read_json(folder / "tokenizer_config.json")
    tokenizer_class = config.get("tokenizer_class", "")
    return not config or tokenizer_class.startswith("LlamaTokenizer") or not (folder / "tokenizer.json").is_file()


class _SentencePiece:
    def __init__(self, folder: Path, backend: str, extra: str) -> None:
        try:
            import sentencepiece
        except ImportError as exc:
            raise BackendUnavailable(backend, "sentencepiece", extra) from exc
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        config = read_json(folder / "tokenizer_config.json")
        self.bos_id = self._sp.bos_id() if config.get("add_bos_token", True) and self._sp.bos_id() >= 0 else None

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))

    def token_id(self, token: str) -> int | None:
        piece = self._sp.piece_to_id(token)
        return piece if piece != self._sp.unk_id() or token == self._sp.id_to_piece(piece) else None

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def token_bytes(self, token: int) -> bytes:
        sp = self._sp
        if sp.is_byte(token):
            return bytes([int(sp.id_to_piece(token)[3:5], 16)])  # "<0x0A>"
        if sp.is_control(token) or sp.is_unknown(token):
            return b""
        return sp.id_to_piece(token).replace("\u2581", " ").encode("utf-8")


class _TokenizersJson:
    def __init__(self, folder: Path, backend: str, extra: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise BackendUnavailable(backend, "tokenizers", extra) from exc
        try:
            self._tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception for unreadable or invalid files
            raise ModelNotFound(
                f"expected a readable tokenizer.json in {folder}, got: {first_line(exc, limit=200)}"
            ) from None
        # user text never becomes a special id: "<|im_end|>" in a passage is text, as it is
        # for llama.cpp (parse_special=False) and sentencepiece (which never parses them)
        self._tk.encode_special_tokens = True
        with_special = self._tk.encode("a", add_special_tokens=True).ids
        without = self._tk.encode("a", add_special_tokens=False).ids
        # BOS counts only if the tokenizer's own post-processing prepends it, as in transformers.
        self.bos_id = with_special[0] if len(with_special) > len(without) else None
        self._special = {i for i, added in self._tk.get_added_tokens_decoder().items() if added.special}
        self._byte_level = _uses_byte_level(folder)

    def encode(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    def token_bytes(self, token: int) -> bytes:
        if token in self._special:
            return b""
        piece = self._tk.id_to_token(token) or ""
        if self._byte_level:
            return bytes(_BYTE_OF_CHAR[ch] for ch in piece if ch in _BYTE_OF_CHAR)
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            return bytes([int(piece[3:5], 16)])
        return piece.replace("\u2581", " ").encode("utf-8")


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


_BYTE_OF_CHAR = _bytes_to_unicode()


def _uses_byte_level(folder: Path) -> bool:
    decoder = read_json(folder / "tokenizer.json").get("decoder") or {}
    kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders", []) if isinstance(d, dict)]
    return "ByteLevel" in kinds


class FolderTokenizer:
    """The tokenizer of a HF-style model folder: ``encode``, ``decode``, ``eos_id``, ``bos_id``.

    Args:
        folder: holds ``tokenizer.model`` and/or ``tokenizer.json`` (+ ``tokenizer_config.json``).
        backend, extra: named in the install hint when a tokenizer package is missing.
    """

    def __init__(self, folder: str | Path, backend: str = "onnx", extra: str = "onnx") -> None:
        folder = Path(folder)
        if is_sentencepiece_llama(folder):
            self._impl: _SentencePiece | _TokenizersJson = _SentencePiece(folder, backend, extra)
        elif (folder / "tokenizer.json").is_file():
            self._impl = _TokenizersJson(folder, backend, extra)
        else:
            raise ModelNotFound(f"expected tokenizer.model or tokenizer.json in {folder}, got neither")
        self.bos_id: int | None = self._impl.bos_id
        self.eos_id: int = self._eos_id(folder)

    def _eos_id(self, folder: Path) -> int:
        token = eos_token_text(folder)
        if token is not None and (found := self._impl.token_id(token)) is not None:
            return found
        for name in ("generation_config.json", "config.json"):
            value = read_json(folder / name).get("eos_token_id")
            if value is not None:
                return int(value[0] if isinstance(value, list) else value)
        raise ModelNotFound(f"expected an eos_token in {folder}/tokenizer_config.json, got none")

    def encode(self, text: str) -> list[int]:
        return self._impl.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._impl.decode(ids)

    @property
    def vocab_size(self) -> int:
        return self._impl.vocab_size

    def token_bytes(self, token: int) -> bytes:
        """The bytes ``token`` adds to generated text (empty for special tokens)."""
        return self._impl.token_bytes(token)
