"""Tokenizer -> GGUF vocabulary: SentencePiece (UniNER, LLaMA) and byte-level BPE (SmolLM2).

Built on gguf-py's vocab helpers; what they leave to the converter is here: the token types of
a tokenizer.json's special tokens, padding to the model's vocab size, the BPE pre-tokenizer name
llama.cpp must use, and whether the tokenizer adds a BOS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from uner.toolkit.checkpoint import read_json_object
from uner.toolkit.errors import CheckpointError


@dataclass
class VocabData:
    model: str  # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    tokens: list[bytes]
    scores: list[float]
    types: list[int]
    pre: str | None = None
    add_bos: bool = True
    special_ids: dict[str, int] = field(default_factory=dict)
    merges: list[str] = field(default_factory=list)


def _pad(vocab: VocabData, vocab_size: int) -> VocabData:
    if len(vocab.tokens) > vocab_size:
        raise CheckpointError(f"expected at most {vocab_size} tokens (config vocab_size), got {len(vocab.tokens)}")
    for i in range(len(vocab.tokens), vocab_size):
        vocab.tokens.append(f"[PAD{i}]".encode())
        vocab.scores.append(-1000.0)
        vocab.types.append(gguf.TokenType.UNUSED)
    return vocab


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    return read_json_object(path) if path.is_file() else {}


def _sentencepiece(folder: Path) -> VocabData:
    try:
        spm = gguf.vocab.SentencePieceVocab(folder)
    except (RuntimeError, OSError, ValueError) as exc:  # sentencepiece: "could not parse ModelProto"
        raise CheckpointError(f"expected a SentencePiece model in {folder / 'tokenizer.model'}, got: {exc}") from exc
    tokens, scores, types = [], [], []
    for text, score, kind in spm.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    add_bos = _tokenizer_config(folder).get("add_bos_token", True)
    return VocabData("llama", tokens, scores, types, pre=None, add_bos=bool(add_bos))


def bpe_pre_tokenizer(tokenizer_json: dict) -> str:
    """The llama.cpp pre-tokenizer matching a tokenizer.json's ``pre_tokenizer``.

    Recognised by structure rather than by hashing encodings: byte-level alone is GPT-2's
    regex; individual digits followed by byte-level is the ``smollm`` pre-tokenizer.
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    raise CheckpointError(f"expected a GPT-2 or SmolLM byte-level pre-tokenizer, got {json.dumps(pre)[:200]}")


def _template_adds_bos(tokenizer_json: dict) -> bool:
    post = tokenizer_json.get("post_processor") or {}
    processors = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for processor in processors:
        single = processor.get("single") or []
        if single and "SpecialToken" in single[0]:
            return True
    return False


def _byte_level_bpe(folder: Path) -> VocabData:
    path = folder / "tokenizer.json"
    try:
        return _read_byte_level_bpe(folder, read_json_object(path))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # a hand-edited or truncated-then-repaired file: name it instead of showing a traceback
        what = exc.args[0] if isinstance(exc, KeyError) else "structure"
        raise CheckpointError(
            f"expected a Hugging Face tokenizer.json in {path}, got one without a readable {what} "
            f"({type(exc).__name__})"
        ) from exc


def _read_byte_level_bpe(folder: Path, tokenizer_json: dict) -> VocabData:
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise CheckpointError(f"expected a byte-level BPE tokenizer.json, got model type {model.get('type')}")
    by_id = {index: text for text, index in model["vocab"].items()}
    added = {item["id"]: item for item in tokenizer_json.get("added_tokens", [])}
    by_id.update({index: item["content"] for index, item in added.items()})
    if sorted(by_id) != list(range(len(by_id))):
        raise CheckpointError("expected contiguous token ids in tokenizer.json, got gaps")
    tokens, types = [], []
    for index in range(len(by_id)):
        tokens.append(by_id[index].encode("utf-8"))
        item = added.get(index)
        if item is None:
            types.append(gguf.TokenType.NORMAL)
        else:
            types.append(gguf.TokenType.CONTROL if item.get("special") else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    config_bos = _tokenizer_config(folder).get("add_bos_token")
    add_bos = bool(config_bos) if config_bos is not None else _template_adds_bos(tokenizer_json)
    return VocabData(
        "gpt2",
        tokens,
        [0.0] * len(tokens),
        types,
        pre=bpe_pre_tokenizer(tokenizer_json),
        add_bos=add_bos,
        merges=merges,
    )


def _special_ids(folder: Path, vocab_size: int) -> dict[str, int]:
    try:
        special = gguf.vocab.SpecialVocab(folder, load_merges=False, n_vocab=vocab_size)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(
            f"expected readable special tokens in the tokenizer files of {folder}, got: {exc!r}"
        ) from exc
    return dict(special.special_token_ids)


def read_vocab(folder: Path, vocab_size: int) -> VocabData:
    """The vocabulary of a HF folder, padded to ``vocab_size``."""
    if (folder / "tokenizer.model").is_file():
        vocab = _sentencepiece(folder)
    elif (folder / "tokenizer.json").is_file():
        vocab = _byte_level_bpe(folder)
    else:
        raise CheckpointError(f"expected tokenizer.model or tokenizer.json in {folder}, got neither")
    vocab.special_ids = _special_ids(folder, vocab_size)
    if "eos" not in vocab.special_ids:
        raise CheckpointError(f"expected an EOS token in the tokenizer files of {folder}, got none")
    return _pad(vocab, vocab_size)


def write_vocab(writer: gguf.GGUFWriter, vocab: VocabData) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    for kind, token_id in vocab.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(False)
