#!/bin/sh
# bench/run-query.sh BUILD - the query tool end to end, process start to
# exit, warm page cache, median of RUNS runs after 2 warm-ups:
#
#   clipdex search "a dog on a beach" against a store of N (100k) random
#   unit vectors in the space of the ViT-B/32-shaped test model (text
#   tower only: tokenize, encode, FAISS Flat search, rows from SQLite),
#   versus bench/query_baseline.py doing the same job in Python (torch
#   text tower memory-mapped, numpy dot over the N vectors memory-mapped):
#   target under 150 ms, and the ratio;
#
#   clipdex dupes (exact + visual) over the same N stored pHashes, about
#   2% of them near copies: target under 5 s;
#
#   clipdex dupes --method semantic (cosine >= 0.95) over the N vectors,
#   about 2% of them near copies, versus bench/dupes_baseline.py doing the
#   same self-join with numpy (blocked matrix products, OpenBLAS on all
#   cores): the ratio, and both group counts, which must agree; then the
#   same join with its tile products at f32, bf16 and int8 (--precision),
#   whose outputs must be identical.
#
# The store is built once by bench/query_fill (about 15 s) and reused
# while N and the model stay the same.
set -eu
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
RUNS=${RUNS:-11}
N=${QUERY_BENCH_N:-100000}
QUERY="a dog on a beach"
make -s "$BUILD/bench/query_fill" "$BUILD/bin/clipdex" BUILD="$BUILD" >/dev/null
$PYTHON tests/tools/make_testdata.py --out build/testdata --only vitb32
M=build/testdata/models/vitb32
W="$BUILD/bench/query"
STAMP="$N v2 $(cat "$M/.stamp" 2>/dev/null)"
if [ "$(cat "$W/stamp" 2>/dev/null)" != "$STAMP" ]; then
    echo "query bench: filling a store with $N random vectors and pHashes"
    rm -rf "$W"
    mkdir -p "$W"
    "$BUILD/bench/query_fill" "$W/store" "$M" "$N" "$W/vectors.npy"
    echo "$STAMP" > "$W/stamp"
fi
C="$BUILD/bin/clipdex"
CLIPDEX_DATA="$W/store"
export CLIPDEX_DATA
val() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }

search=$($PYTHON bench/wallclock.py -r "$RUNS" -- "$C" search --model "$M" -n 10 "$QUERY")
base=$($PYTHON bench/wallclock.py -r "$RUNS" -- $PYTHON bench/query_baseline.py "$M" "$W/vectors.npy" -n 10 "$QUERY")
dupes=$($PYTHON bench/wallclock.py -r 3 -w 1 -- "$C" dupes --format json)
groups=$("$C" dupes --format json | wc -l)
sem=$($PYTHON bench/wallclock.py -r 3 -w 1 -- "$C" dupes --method semantic --format json)
semb=$($PYTHON bench/wallclock.py -r 3 -w 1 -- $PYTHON bench/dupes_baseline.py "$W/vectors.npy" --threshold 0.95)
sem_groups=$("$C" dupes --method semantic --format json | wc -l)
semb_groups=$($PYTHON bench/dupes_baseline.py "$W/vectors.npy" --threshold 0.95)
s=$(echo "$search" | val median_ms); b=$(echo "$base" | val median_ms); d=$(echo "$dupes" | val median_ms)
printf '%-46s %10s %10s\n' "($N vectors, ViT-B/32 text tower)" median min
printf '%-46s %8s ms %8s ms\n' "clipdex search \"$QUERY\"" "$s" "$(echo "$search" | val min_ms)"
printf '%-46s %8s ms %8s ms\n' "python baseline (torch + numpy)" "$b" "$(echo "$base" | val min_ms)"
awk -v s="$s" -v b="$b" 'BEGIN { printf "%-46s %9.1fx  (target: search under 150 ms)\n", "search speed-up over the baseline", b / s }'
printf '%-46s %8s ms            (%s groups; target under 5000 ms)\n' "clipdex dupes (exact+visual) over $N pHashes" "$d" "$groups"
sm=$(echo "$sem" | val median_ms); sb=$(echo "$semb" | val median_ms)
printf '%-46s %8s ms            (%s groups)\n' "clipdex dupes --method semantic, $N vectors" "$sm" "$sem_groups"
printf '%-46s %8s ms            (%s groups)\n' "numpy baseline (blocked self-join)" "$sb" "$semb_groups"
awk -v s="$sm" -v b="$sb" 'BEGIN { printf "%-46s %9.2fx\n", "semantic dupes speed-up over the baseline", b / s }'
# The self-join at each precision of its tile products (the pairs are the
# same at every one: each is re-checked exactly; the outputs are compared).
for p in f32 bf16 int8; do
    t=$($PYTHON bench/wallclock.py -r 3 -w 1 -- "$C" dupes --method semantic --precision $p --format json | val median_ms)
    "$C" dupes --method semantic --precision $p --format json > "$W/sem-$p.json"
    eval "sem_$p=$t"
    printf '%-46s %8s ms            (%s groups)\n' "  tile products at $p" "$t" "$(wc -l < "$W/sem-$p.json")"
done
cmp -s "$W/sem-f32.json" "$W/sem-bf16.json" && cmp -s "$W/sem-f32.json" "$W/sem-int8.json" ||
    echo "semantic dupes: the output differs between precisions" >&2
awk -v f="$sem_f32" -v b="$sem_bf16" -v i="$sem_int8" 'BEGIN { printf "%-46s %9.2fx bf16, %.2fx int8  (target: under 8000 ms)\n", "  speed-up over f32 tiles", f / b, f / i }'
