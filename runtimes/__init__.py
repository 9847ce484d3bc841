"""uner-toolkit inference side: run UniNER models through one extraction interface.

>>> from uner import load
>>> with load("out/UniNER-7B-type.Q4_K_M.gguf") as ner:  # doctest: +SKIP
...     ner.extract("Barack Obama visited Paris.", ["person", "location"])
"""

from uner.base import Extraction, Extractor, GenerativeExtractor
from uner.corpus import extract_corpus
from uner.entity import Entity
from uner.errors import BackendUnavailable, InputError, ModelNotFound, UnerError
from uner.loading import BACKENDS, detect_backend, load

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "Entity",
    "Extraction",
    "Extractor",
    "GenerativeExtractor",
    "InputError",
    "ModelNotFound",
    "UnerError",
    "__version__",
    "detect_backend",
    "extract_corpus",
    "load",
]
