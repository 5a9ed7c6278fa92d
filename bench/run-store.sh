#!/bin/sh
# bench/run-store.sh BUILD - the index store (bench/store_bench.c) with
# random unit vectors of dimension 512: add rate, warm open time, k=10
# search latency (median, p99), reader memory and file sizes for 10k and
# 100k vectors with Flat; then HNSW32,Flat over the same 100k vectors:
# its build time (rebuilt from SQLite) and recall@10 against Flat at
# efSearch 16, 64 and 256.
#
# CLIPDEX_BENCH_1M=1 adds 1M vectors with Flat (about 1.3 GB of SQLite and
# 2 GB of FAISS file under $TMPDIR, a few minutes), and HNSW32 recall@10
# at 1M measured on the FAISS C API (bench/hnsw_recall.c, one bulk add:
# about 25 minutes per data set on two cores) for uniform and clustered
# vectors.  CLIPDEX_BENCH_HNSW=N sets the store's HNSW size (default
# 100000).
# Targets (issue 4): 100k Flat search < 10 ms, open < 150 ms.
set -eu
BUILD=${1:-build}
make -s "$BUILD/bench/store_bench" "$BUILD/bench/hnsw_recall" BUILD="$BUILD" >/dev/null
B="$BUILD/bench/store_bench"
T=$(mktemp -d "${TMPDIR:-/tmp}/cdx-store-bench-XXXXXX")
trap 'rm -rf "$T"' EXIT

sizes="10000 100000"
[ "${CLIPDEX_BENCH_1M:-0}" = 1 ] && sizes="$sizes 1000000"
hnsw=${CLIPDEX_BENCH_HNSW:-100000}

val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
printf '%-9s %8s %8s %9s %9s %8s %8s %7s %8s\n' vectors add/s open_ms search_ms p99_ms rss_MB peak_MB db_MB faiss_MB
for n in $sizes; do
    "$B" build "$n" "$T/flat-$n" > "$T/b-$n"
    "$B" measure "$T/flat-$n" > "$T/m-$n"
    printf '%-9s %8s %8s %9s %9s %8s %8s %7s %8s\n' "$n" "$(val "$T/b-$n" add_per_s)" \
        "$(val "$T/m-$n" open_ms_median)" "$(val "$T/m-$n" search_ms_median)" \
        "$(val "$T/m-$n" search_ms_p99)" "$(val "$T/m-$n" rss_mb_after_open)" \
        "$(val "$T/m-$n" rss_mb_peak)" "$(val "$T/b-$n" db_file_mb)" "$(val "$T/b-$n" faiss_file_mb)"
    [ "$n" = "$hnsw" ] || rm -rf "$T/flat-$n"
done

[ -d "$T/flat-$hnsw" ] || "$B" build "$hnsw" "$T/flat-$hnsw" > /dev/null
mkdir "$T/hnsw"
cp "$T/flat-$hnsw/clipdex.db" "$T/hnsw/"
"$B" reindex "$T/hnsw" "HNSW32,Flat" > "$T/r"
echo "HNSW32,Flat over the same $hnsw vectors: built from SQLite in $(val "$T/r" reindex_seconds) s, file $(val "$T/r" faiss_file_mb) MB"
for ef in 16 64 256; do
    "$B" measure "$T/hnsw" "efSearch=$ef" "$T/flat-$hnsw" > "$T/h"
    printf '  efSearch=%-4s recall@10 %s  search median %s ms, p99 %s ms, open %s ms\n' "$ef" \
        "$(val "$T/h" recall_at_10)" "$(val "$T/h" search_ms_median)" "$(val "$T/h" search_ms_p99)" \
        "$(val "$T/h" open_ms_median)"
done

if [ "${CLIPDEX_BENCH_1M:-0}" = 1 ]; then
    for data in uniform clustered; do
        echo "HNSW32,Flat at 1M, $data vectors, one bulk add (bench/hnsw_recall):"
        "$BUILD/bench/hnsw_recall" 1000000 200 "$data" | sed 's/^/  /'
    done
fi
