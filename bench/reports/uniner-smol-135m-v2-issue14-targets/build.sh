#!/bin/bash
# builds every candidate of the issue-14 targets run from the current uniner-smol-135m (r16)
set -e
cd /work/main
REF=$(.venv/bin/python -c "from uner.bench.reference_models import resolve_reference; print(resolve_reference('uniner-smol-135m'))")
D=/work/shared/data
W=/tmp/final
.venv/bin/uner-export imatrix $REF -d $D/conll2003/train.txt -d $D/mit_movie/engtrain.bio -d $D/crossner_ai/train.txt -d $D/crossner_literature/train.txt -d $D/crossner_music/train.txt --tokens 100000 --out $W/imatrix.gguf --threads 2 --force
.venv/bin/uner-export gguf $REF --out $W/gguf-plain --quant q8_0,q4_k_m --threads 2 --force
.venv/bin/uner-export gguf $REF --out $W/gguf-imatrix --quant q4_k_m,iq4_xs --imatrix $W/imatrix.gguf --threads 2 --force
.venv/bin/uner-export gguf $REF --out $W/gguf-imatrix-emb4 --quant iq4_xs --imatrix $W/imatrix.gguf --embedding-type iq4_nl --threads 2 --force
for P in fp32 int8 int4; do .venv/bin/uner-export onnx $REF --out $W/onnx-$P -p $P --force; done
.venv/bin/uner-export onnx $REF --out $W/onnx-mixed -p int4 --int8-projections qkv_proj,up_proj,down_proj --force
ls -R $W | head -60
