# Archived: built this run's int4-gptq-head and int4-gptq-int8-qkv from the Hessians build_gptq_variants.py saved.
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from build_gptq_variants import export_gptq

from uner.bench.reference_models import resolve_reference

source = Path(resolve_reference("uniner-smol-135m"))
h = dict(np.load("/tmp/int4-gptq/hessians-100000.npz"))
export_gptq(source, Path("/tmp/int4-gptq/int4-gptq-head"), h)
h.pop("lm_head.MatMul.weight")
export_gptq(source, Path("/tmp/int4-gptq/int4-gptq-int8-qkv"), h, int8_projections=("qkv_proj",))
