#!/bin/bash
set -e
cd /work/main
REF=$(.venv/bin/python -c "from uner.bench.reference_models import resolve_reference; print(resolve_reference('uniner-smol-135m'))")
D=/work/shared/data
W=/tmp/final
.venv/bin/uner-export imatrix $REF -d $D/conll2003/train.txt -d $D/mit_movie/engtrain.bio -d $D/crossner_ai/train.txt -d $D/crossner_literature/train.txt -d $D/crossner_music/train.txt --tokens 100000 --out $W/imatrix-blocks.gguf --no-output-head --threads 2 --force -q
.venv/bin/uner-export gguf $REF --out $W/gguf-none2 --quant iq4_xs --threads 2 --force -q
.venv/bin/uner-export gguf $REF --out $W/gguf-blocks --quant q4_k_m,iq4_xs --imatrix $W/imatrix-blocks.gguf --threads 2 --force -q
.venv/bin/uner-export gguf $REF --out $W/gguf-blocks-emb4 --quant iq4_xs --imatrix $W/imatrix-blocks.gguf --embedding-type iq4_nl --threads 2 --force -q
ln -f $W/gguf-none2/uniner-smol-135m.IQ4_XS.gguf $W/c/IQ4_XS-no-imatrix.gguf
ln -f $W/gguf-blocks/uniner-smol-135m.IQ4_XS.gguf $W/c/IQ4_XS-imatrix-blocks-only.gguf
ln -f $W/gguf-blocks/uniner-smol-135m.Q4_K_M.gguf $W/c/Q4_K_M-imatrix-blocks-only.gguf
ln -f $W/gguf-blocks-emb4/uniner-smol-135m.IQ4_XS.gguf $W/c/IQ4_XS-imatrix-blocks-only-emb-IQ4_NL.gguf
sha256sum $W/c/*.gguf
C="-c $W/c/IQ4_XS-no-imatrix.gguf -c $W/c/IQ4_XS-imatrix-blocks-only.gguf -c $W/c/IQ4_XS-imatrix.gguf -c $W/c/IQ4_XS-imatrix-blocks-only-emb-IQ4_NL.gguf -c $W/c/IQ4_XS-imatrix-emb-IQ4_NL.gguf"
.venv/bin/uner bench -r uniner-smol-135m $C -d $D/crossner_ai/CrossNER_AI.json -d $D/crossner_literature/CrossNER_literature.json -d $D/crossner_music/CrossNER_music.json --limit 700 --threads 2 --no-baselines -o $W/bench2
