"""``load()``: pick the backend from the artifact and return an :class:`Extractor`."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from uner.base import GenerativeExtractor
from uner.cache import CheckedFiles
from uner.errors import InputError, IntegrityError, ModelNotFound
from uner.hub import parse_variant_ref, published_variants, pull
from uner.manifest import MANIFEST, read_manifest

#: backend name -> "module:Class"; modules import their heavy dependency only when built.
BACKENDS: dict[str, str] = {
    "torch": "uner.torch_backend:TorchExtractor",
    "llamacpp": "uner.llamacpp_backend:LlamaCppExtractor",
    "onnx": "uner.onnx_backend:OnnxExtractor",
}


def backend_class(name: str) -> type[GenerativeExtractor]:
    """The class implementing backend ``name``."""
    if name not in BACKENDS:
        raise InputError(f"expected a backend among auto, {', '.join(BACKENDS)}, got {name!r}")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


_LOCAL_SUFFIXES = {".gguf", ".onnx", ".safetensors", ".bin", ".json", ".toml", ".jsonl", ".txt"}


def _looks_local(path: Path) -> bool:
    """``out/m.gguf`` is a missing file, not a Hub repo: a model-file suffix, or a first part
    that is a local folder, says the user meant a path."""
    return path.suffix.lower() in _LOCAL_SUFFIXES or Path(path.parts[0]).is_dir()


def resolve_model(model: str | Path) -> Path:
    """A local path as is; ``org/name:variant`` is one published variant (pulled once, checked
    against the repo's manifest, then served from the Hugging Face cache, offline too); a Hub
    repo id (``org/name``) not present locally is downloaded as a HF folder."""
    path = Path(model)
    if path.exists():
        return path
    if ref := parse_variant_ref(str(model)):
        return pull(*ref)
    if not _REPO_ID.match(str(model)) or _looks_local(path):
        return path
    if variants := published_variants(str(model)):  # one small file instead of every variant
        raise ModelNotFound(
            f"expected one variant of {model}, e.g. {model}:{variants[0]} (published: {', '.join(variants)})"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelNotFound(f"expected a local model path, got {model} (huggingface_hub is not installed)") from exc
    try:
        return Path(snapshot_download(str(model)))
    except Exception as exc:  # network, auth, offline-cache misses: all mean "not available"
        raise ModelNotFound(
            f"expected a local path or a reachable Hub repo, got {model}: {type(exc).__name__}"
        ) from exc


def check_against_manifest(path: Path) -> None:
    """An export checked against the ``manifest.json`` beside it (size and sha256 of an ONNX
    folder's files, or of the GGUF file loaded), hashing each file once: a file unchanged
    since it matched is remembered by its stamp (:mod:`uner.cache`), as ``uner pull`` does."""
    folder = path if path.is_dir() else path.parent
    if not (folder / MANIFEST).is_file():
        return  # not one of our exports (an onnxruntime-genai folder, a GGUF from elsewhere)
    files = read_manifest(folder)["files"]
    names = list(files) if path.is_dir() else [path.name] if path.name in files else []
    checked = CheckedFiles()
    for name in names:
        if mismatch := checked.check(folder / name, files[name], name):
            raise IntegrityError(
                f"expected {folder / name} to match {folder / MANIFEST}, got {mismatch.reason}: "
                "the file is damaged or was changed; export it again (uner-export verify checks a folder)"
            )
    checked.save()


def detect_backend(path: str | Path) -> str:
    """The backend that runs the artifact at ``path``: GGUF file -> llamacpp, ONNX export
    folder (or .onnx file) -> onnx, HF folder -> torch."""
    from uner.llamacpp_backend import is_gguf
    from uner.onnx_layout import is_onnx_folder

    path = Path(path)
    if not path.exists():
        raise ModelNotFound(f"expected a model path, got {path}, which does not exist")
    if is_gguf(path):
        return "llamacpp"
    if path.is_file() and path.suffix.lower() == ".gguf":
        with path.open("rb") as handle:
            head = handle.read(4)
        raise ModelNotFound(
            f"expected a GGUF file, got {path}, which starts with {head!r} instead of b'GGUF' "
            "(an unfinished download, or another format renamed)"
        )
    if is_onnx_folder(path):  # before the HF check: our ONNX folders carry config.json too
        return "onnx"
    if path.is_dir() and (path / "config.json").is_file():
        return "torch"
    if path.is_dir() and any(path.glob("*.gguf")):
        ggufs = ", ".join(sorted(p.name for p in path.glob("*.gguf")))
        raise ModelNotFound(f"expected one model, got the folder {path} holding several GGUF files: {ggufs}")
    raise ModelNotFound(
        f"expected a .gguf file, an ONNX export folder or a Hugging Face folder with config.json, got {path}"
    )


def load(model: str | Path, backend: str = "auto", **options) -> GenerativeExtractor:
    """Load a UniNER model for extraction.

    Args:
        model: a GGUF file (llama.cpp), an ONNX export folder (ONNX Runtime), a Hugging Face
            model folder (torch), ``org/name:variant`` (one variant of a repo made by
            ``uner-export push``), or a Hub repo id of a HF model (downloaded once, then served
            from the HF cache offline).
        backend: ``"auto"`` to pick from the artifact, or a name in :data:`BACKENDS`.
        **options: decoding options (``max_new_tokens``, ``batched``) and the backend's own
            (``n_threads``, ``dtype``, ``provider``...).

    >>> from uner import load
    >>> ner = load("out/UniNER-7B-type.Q4_K_M.gguf")  # doctest: +SKIP
    >>> ner.extract("Barack Obama visited Paris.", ["person", "location"])  # doctest: +SKIP
    [Entity(label='person', text='Barack Obama', start=0, end=12), Entity(label='location', ...)]
    """
    path = resolve_model(model)
    detected = detect_backend(path)
    if detected in ("llamacpp", "onnx"):
        check_against_manifest(path)
    name = detected if backend == "auto" else backend
    cls = backend_class(name)
    if detected != name:
        raise InputError(f"expected an artifact the {name} backend runs, got {model} (a {detected} artifact)")
    accepted = {
        **inspect.signature(GenerativeExtractor.__init__).parameters,
        **inspect.signature(cls.__init__).parameters,
    }
    if unknown := [key for key in options if key not in accepted]:
        raise InputError(f"expected options of the {name} backend, got {', '.join(unknown)}, which it does not take")
    return cls(path, **options)
