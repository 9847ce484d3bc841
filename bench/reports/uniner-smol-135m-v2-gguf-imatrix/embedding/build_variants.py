from pathlib import Path
from uner.toolkit.imatrix import read_imatrix
from uner.toolkit.quantize import quantize_gguf
W = Path("/tmp/imatrix-variants")
conv = read_imatrix(W / "imatrix-conversations.gguf").means()
for t in ("iq4_xs", "iq4_nl", "q4_k_m"):
    out = W / f"model.{t.upper()}-conversations-emb-IQ4_NL.gguf"
    if not out.exists():
        quantize_gguf(W / "model.F16.gguf", out, t, n_threads=2, embedding_type="iq4_nl", importance=conv)
    print(out)
