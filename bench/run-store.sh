#!/bin/sh
# bench/run-store.sh BUILD - the index store (bench/store_bench.c): random
# unit vectors of dimension 512; add rate, warm open time, k=10 search
# latency (median, p99), reader memory, file sizes, for 10k and 100k
# vectors with Flat; HNSW32,Flat recall@10 against Flat (efSearch 16, 64,
# 256) at 100k.  CLIPDEX_BENCH_1M=1 adds 1M (Flat, and HNSW at 1M instead
# of 100k): about 1.5 GB of SQLite + 2 GB of FAISS file under $TMPDIR and
# tens of minutes.  Targets (issue 4): 100k Flat search < 10 ms, open <
# 150 ms.
set -eu
BUILD=${1:-build}
make -s "$BUILD/bench/store_bench" BUILD="$BUILD" >/dev/null
B="$BUILD/bench/store_bench"
T=$(mktemp -d "${TMPDIR:-/tmp}/cdx-store-bench-XXXXXX")
trap 'rm -rf "$T"' EXIT

sizes="10000 100000"
hnsw=100000
if [ "${CLIPDEX_BENCH_1M:-0}" = 1 ]; then sizes="$sizes 1000000"; hnsw=1000000; fi

val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
printf '%-10s %9s %9s %9s %9s %9s %9s %8s %8s\n' vectors add/s open_ms srch_med srch_p99 rss_MB peak_MB db_MB faiss_MB
for n in $sizes; do
    "$B" flat "$n" "$T/flat-$n" > "$T/out-$n"
    o="$T/out-$n"
    printf '%-10s %9s %9s %9s %9s %9s %9s %8s %8s\n' "$n" "$(val "$o" add_per_s)" "$(val "$o" open_ms_median)" \
        "$(val "$o" search_ms_median)" "$(val "$o" search_ms_p99)" "$(val "$o" rss_mb_after_open)" \
        "$(val "$o" rss_mb_peak)" "$(val "$o" db_file_mb)" "$(val "$o" faiss_file_mb)"
    [ "$n" = "$hnsw" ] || rm -rf "$T/flat-$n"
done

echo "HNSW32,Flat at $hnsw vectors, recall@10 against Flat (same vectors, 300 queries):"
"$B" hnsw "$hnsw" "$T/hnsw" "$T/flat-$hnsw" > "$T/hnsw.out"
awk '
    $1 == "add_per_s" { printf "  build: %s vectors/s", $2 }
    $1 == "faiss_file_mb" { printf ", file %s MB\n", $2 }
    $1 == "params" { p = $2 }
    $1 == "open_ms_median" { o = $2 }
    $1 == "search_ms_median" { m = $2 }
    $1 == "search_ms_p99" { q = $2 }
    $1 == "recall_at_10" { printf "  %-13s recall@10 %s  search median %s ms, p99 %s ms, open %s ms\n", p, $2, m, q, o }
' "$T/hnsw.out"
