"""``load()``: pick the backend from the artifact and return an :class:`Extractor`."""

from __future__ import annotations

import importlib
from pathlib import Path

from runtimes.base import GenerativeExtractor
from runtimes.errors import InputError, ModelNotFound

#: backend name -> "module:Class"; modules import their heavy dependency only when built.
BACKENDS: dict[str, str] = {
    "torch": "runtimes.torch_backend:TorchExtractor",
    "llamacpp": "runtimes.llamacpp_backend:LlamaCppExtractor",
}


def backend_class(name: str) -> type[GenerativeExtractor]:
    """The class implementing backend ``name``."""
    if name not in BACKENDS:
        raise InputError(f"expected a backend among auto, {', '.join(BACKENDS)}, got {name!r}")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def detect_backend(path: str | Path) -> str:
    """The backend that runs the artifact at ``path``: GGUF file -> llamacpp, HF folder -> torch."""
    from runtimes.llamacpp_backend import is_gguf

    path = Path(path)
    if not path.exists():
        raise ModelNotFound(f"expected a model path, got {path}, which does not exist")
    if is_gguf(path):
        return "llamacpp"
    if path.is_dir() and (path / "config.json").is_file():
        return "torch"
    if path.is_dir() and any(path.glob("*.gguf")):
        ggufs = ", ".join(sorted(p.name for p in path.glob("*.gguf")))
        raise ModelNotFound(f"expected one model, got the folder {path} holding several GGUF files: {ggufs}")
    raise ModelNotFound(
        f"expected a .gguf file or a Hugging Face folder with config.json, got {path}"
    )


def load(model: str | Path, backend: str = "auto", **options) -> GenerativeExtractor:
    """Load a UniNER model for extraction.

    Args:
        model: a GGUF file (llama.cpp) or a Hugging Face model folder (torch).
        backend: ``"auto"`` to pick from the artifact, or a name in :data:`BACKENDS`.
        **options: passed to the backend (``max_new_tokens``, ``n_threads``, ``dtype``...).

    >>> from runtimes import load
    >>> ner = load("out/UniNER-7B-type.Q4_K_M.gguf")  # doctest: +SKIP
    >>> ner.extract("Barack Obama visited Paris.", ["person", "location"])  # doctest: +SKIP
    [Entity(label='person', text='Barack Obama', start=0, end=12), Entity(label='location', ...)]
    """
    name = detect_backend(model) if backend == "auto" else backend
    cls = backend_class(name)
    if backend != "auto" and detect_backend(model) != name:
        raise InputError(f"expected an artifact the {name} backend runs, got {model}")
    return cls(model, **options)
