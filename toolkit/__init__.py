"""uner-toolkit export side: converters, quantization and (later) recipes and publishing.

>>> from uner.toolkit import export_gguf_ladder
>>> export_gguf_ladder("UniNER-7B-type", "out", "f16", "q8_0,q4_k_m")  # doctest: +SKIP
"""

from uner.toolkit.constants import QUANT_TYPES, OutType
from uner.toolkit.export_gguf import export_gguf
from uner.toolkit.pipeline import GGUFExport, export_gguf_ladder
from uner.toolkit.quantize import quantize_ladder

__all__ = [
    "QUANT_TYPES",
    "GGUFExport",
    "OutType",
    "export_gguf",
    "export_gguf_ladder",
    "export_onnx",
    "quantize_ladder",
]


def __getattr__(name: str):
    # the ONNX exporter imports onnx at module level: loaded on first use, so that
    # ``import uner.toolkit`` (GGUF only) works without the ONNX stack installed
    if name == "export_onnx":
        from uner.toolkit.export_onnx import export_onnx

        return export_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
