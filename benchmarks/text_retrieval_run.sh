#!/bin/sh
# The text retrieval benchmark (benchmarks/RESULTS.md, "Text retrieval"), end to end; run it under the CPU lock:
#   ENC=... OUT=... CORPUS=... ADAPTOR=... flock /work/coord/cpu.lock sh benchmarks/text_retrieval_run.sh > run.log 2>&1
# ENC holds the base encodings from `mrl encode` (corpus, test, tune, wordnet), ADAPTOR the folder from
# `mrl adapt` (fitted on benchmarks/corpus_adaptor_sample.py's sample), CORPUS the text corpus folder.
# THREADS (default 1) is what every search, the tuner and the table use; BUILD_THREADS (default THREADS) builds the
# peer indexes only, whose build time the table then marks with its thread count.
# FINE_EF="288 320 384" adds a second table step that sweeps the graph peers at those efSearch values (table-text-fine).
# ROUNDS (default 3): the table times every peer setting and the funnel in that many interleaved rounds (median reported).
# HEAD=1 benchmarks the finished leading shards of an unfinished corpus encoding (benchmarks/shard_head.py).
set -e
PY=${PY:-.venv/bin/python}; MRL=${MRL:-.venv/bin/mrl}; B=benchmarks/retrieval_bench.py; T=${THREADS:-1}; BT=${BUILD_THREADS:-$T}
: "${ENC:?set ENC}" "${OUT:?set OUT}" "${CORPUS:?set CORPUS}" "${ADAPTOR:?set ADAPTOR}"
AD=$ENC-adapted; QRELS=$CORPUS/wordnet/qrels/test.tsv
# the fair peers (retrieval_peers.FAIR: each built as its users build it; hnswlib needs `pip install hnswlib`, a C++ build)
PEERS=${PEERS:-"flat hnsw-m16 hnsw-m32 hnswlib usearch-f32 usearch-f32-m32 usearch-i8 hnsw-sq8 ivf-fs"}
C=corpus; [ "${HEAD:-0}" = 1 ] && C=corpus-head
step() { echo "$(date +%T) == $*"; }
if [ "$C" = corpus-head ]; then step head of the base encoding; [ -d "$ENC/corpus-head" ] || $PY benchmarks/shard_head.py "$ENC/corpus" "$ENC/corpus-head"; fi
for s in $C test tune wordnet; do step adapt $s; $MRL apply-adaptor "$ADAPTOR" --input "$ENC/$s" --out "$AD/$s"; done
step reference; $PY $B reference --corpus "$AD/$C" --test "$AD/test" --tune "$AD/tune" --out "$OUT/bench" --threads $T
step funnel build and tune; [ -f "$OUT/funnel/tuning.md" ] || $MRL index build "$OUT/funnel" --vectors "$AD/$C" --target-recall 0.99 --queries "$AD/tune" --threads $T
step peers; $PY $B peers --corpus "$AD/$C" --out "$OUT/bench" --peers $PEERS --threads $BT
step table; $PY $B table --corpus "$AD/$C" --test "$AD/test" --out "$OUT/bench" --funnel-index "$OUT/funnel" --queries 10000 --single 1000 --peers $PEERS --threads $T --rounds ${ROUNDS:-3} --name text
if [ -n "${FINE_EF:-}" ]; then step table fine; $PY $B table --corpus "$AD/$C" --test "$AD/test" --out "$OUT/bench" --queries 10000 --single 1000 --peers hnsw-m16 hnsw-m32 hnswlib usearch-f32 --ef $FINE_EF --threads $T --name text-fine; fi
step search cli; $MRL index search "$OUT/funnel" --queries "$AD/test" --k 10 --single 1000 --threads $T
step quality adapted; $PY $B quality --corpus "$AD/$C" --test "$AD/test" --out "$OUT/bench" --wordnet "$AD/wordnet" --qrels "$QRELS" --funnel-index "$OUT/funnel" --name adapted --queries 2000 --threads $T
step quality base; $PY $B quality --corpus "$ENC/$C" --test "$ENC/test" --out "$OUT/bench-base" --wordnet "$ENC/wordnet" --qrels "$QRELS" --name base --queries 2000 --threads $T
step done
