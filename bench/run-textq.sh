#!/bin/sh
# run-textq.sh - a 10-token text query at each precision and path, the
# configurations interleaved round by round so that a loaded machine
# hurts them alike.  Prints one line per run: config, median, p10 (ms).
#   old = oneDNN at exact rows on the pool (CLIPDEX_QSMALL=off
#         CLIPDEX_ONEDNN_PAD=off CLIPDEX_TEXT_SERIAL=off), the path before
#   new = qsmall.c (int8: AVX-512 VNNI, bf16: AVX512_BF16)
# Usage: sh bench/run-textq.sh [ROUNDS] [REPS] [MODEL]
set -eu
ROUNDS=${1:-3}
REPS=${2:-300}
MODEL=${3:-build/testdata/models/vitb32}
B=${BUILD:-build}/bench/engine_bench
export CLIPDEX_CACHE=${CLIPDEX_CACHE:-off}
one() { # label, env..., precision
    label=$1; shift
    out=$(env "$@" "$B" "$MODEL" text 10 "$REPS" "$PREC")
    med=$(echo "$out" | awk '/text_ms_median/ {print $2}')
    p10=$(echo "$out" | awk '/text_ms_p10/ {print $2}')
    cpu=$(echo "$out" | awk '/text_cpu_ms_median/ {print $2}')
    rss=$(echo "$out" | awk '/peak_rss_mb/ {print $2}')
    echo "$label median $med p10 $p10 cpu_median $cpu rss_mb $rss"
}
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for t in ${THREADS:-2 1}; do
        PREC=f32 one "t$t f32" BENCH_THREADS=$t
        PREC=bf16 one "t$t bf16-old(onednn)" BENCH_THREADS=$t CLIPDEX_QSMALL=off CLIPDEX_ONEDNN_PAD=off CLIPDEX_TEXT_SERIAL=off
        PREC=bf16 one "t$t bf16-new(qsmall)" BENCH_THREADS=$t
        PREC=int8 one "t$t int8-old(onednn)" BENCH_THREADS=$t CLIPDEX_QSMALL=off CLIPDEX_ONEDNN_PAD=off CLIPDEX_TEXT_SERIAL=off
        PREC=int8 one "t$t int8-new(qsmall)" BENCH_THREADS=$t
    done
    r=$((r + 1))
done
