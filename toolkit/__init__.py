"""uner-toolkit export side: converters, quantization and (later) recipes and publishing.

>>> from toolkit import export_gguf_ladder
>>> export_gguf_ladder("UniNER-7B-type", "out", "f16", "q8_0,q4_k_m")  # doctest: +SKIP
"""

from toolkit.constants import QUANT_TYPES, OutType
from toolkit.export_gguf import export_gguf
from toolkit.pipeline import GGUFExport, export_gguf_ladder
from toolkit.quantize import quantize_ladder

__all__ = ["QUANT_TYPES", "GGUFExport", "OutType", "export_gguf", "export_gguf_ladder", "quantize_ladder"]
