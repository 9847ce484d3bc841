"""Experiment: the conversations imatrix plus an entry for the tied output (token_embd.weight),
from the lm_head's inputs (final hidden states), then IQ4_XS with a 4-bit embedding."""
from pathlib import Path
import torch
from uner.toolkit import imatrix as im
from uner.toolkit.quantize import quantize_gguf
from uner.bench.reference_models import resolve_reference
W = Path("/tmp/imatrix-variants")
orig = im.LlamaTensorMap.gguf_name
matrix_holder = {}
_orig_accumulator = im._accumulator
def patched_collect():
    src = resolve_reference("uniner-smol-135m")
    files = [Path("/work/shared/data") / f for f in ["conll2003/train.txt", "mit_movie/engtrain.bio", "crossner_ai/train.txt", "crossner_literature/train.txt", "crossner_music/train.txt"]]
    # register an extra hook on lm_head by wrapping named_modules' isinstance check: simplest is to patch TorchExtractor after load
    from uner.torch_backend import TorchExtractor
    orig_enter = TorchExtractor.__enter__
    def enter(self):
        out = orig_enter(self)
        return out
    matrix = None
    real_collect = im.collect
    # monkeypatch: wrap _accumulator registration by adding lm_head hook when model loaded
    orig_init = TorchExtractor.__init__
    def init(self, *a, **k):
        orig_init(self, *a, **k)
        head = self.model.lm_head
        def hook(_m, inputs):
            m = matrix_holder["m"]
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sq = (x * x).sum(dim=0).double().cpu().numpy()
            m.sums["token_embd.weight"] = m.sums.get("token_embd.weight", 0) + sq
            m.counts["token_embd.weight"] = m.counts.get("token_embd.weight", 0) + x.shape[0]
        head.register_forward_pre_hook(hook)
    TorchExtractor.__init__ = init
    orig_cls = im.ImportanceMatrix
    class Capture(orig_cls):
        def __init__(self, *a, **k):
            super().__init__(*a, **k); matrix_holder["m"] = self
    im.ImportanceMatrix = Capture
    return real_collect(src, files, tokens=100000, mode="conversations")
m = patched_collect()
print(sorted(m.sums)[-3:], m.counts.get("token_embd.weight"))
im.write_imatrix(W / "imatrix-conversations-output.gguf", m)
means = m.means()
for t in ("iq4_xs",):
    out = W / f"model.{t.upper()}-conversations+output-emb-IQ4_NL.gguf"
    quantize_gguf(W / "model.F16.gguf", out, t, n_threads=2, embedding_type="iq4_nl", importance=means)
    print(out)
