#!/bin/sh
# bench/run-serve.sh BUILD - clipdex serve:
#
#   search latency through HTTP (keep-alive, loopback) at N (100k) random
#   vectors in the space of the ViT-B/32-shaped test model, text tower
#   encoding every query: p50 and p99 with 1 and with 32 concurrent
#   clients (target: p50 <= 15 ms with 1 client), and queries/s;
#
#   the time from opening the page (?q=...) in headless chromium to the
#   first thumbnail shown, on the query tests' library of real photos
#   (tests/tools/query_fixture.py, about 35 files, the same ViT-B/32-shaped
#   model): first with an empty thumbnail cache, then warm.
#
# The 100k store is bench/run-query.sh's (built by bench/query_fill).
# Numbers only; the machine may be shared: `uptime` is printed with them.
set -eu
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
N=${QUERY_BENCH_N:-100000}
REQ=${SERVE_BENCH_REQUESTS:-100}
make -s "$BUILD/bench/query_fill" "$BUILD/bin/clipdex" BUILD="$BUILD" >/dev/null
$PYTHON tests/tools/make_testdata.py --out build/testdata --only vitb32
M=build/testdata/models/vitb32
W="$BUILD/bench/query"
STAMP="$N v2 $(cat "$M/.stamp" 2>/dev/null)"
if [ "$(cat "$W/stamp" 2>/dev/null)" != "$STAMP" ]; then
    echo "serve bench: filling a store with $N random vectors and pHashes"
    rm -rf "$W"
    mkdir -p "$W"
    "$BUILD/bench/query_fill" "$W/store" "$M" "$N" "$W/vectors.npy"
    echo "$STAMP" > "$W/stamp"
fi
C="$BUILD/bin/clipdex"
echo "serve bench: $(uptime)"
echo "search through HTTP, $N vectors, ViT-B/32 text tower, $REQ requests with 1 client, 640 with 32:"
$PYTHON bench/serve_bench.py "$C" "$W/store" "$M" --clients 1,32 --requests "$REQ"

# the page: a library of real photos, indexed with the same model
P="$BUILD/bench/serve-page"
if [ ! -f "$P/stamp" ] || [ "$(cat "$P/stamp")" != "$STAMP" ]; then
    rm -rf "$P"
    mkdir -p "$P"
    CLIPDEX_BUILD="$BUILD" $PYTHON -c "
import sys; sys.path.insert(0, 'tests/tools'); import query_fixture as qf
lib = '$P/lib'; qf.make_library(lib)
p = qf.index(lib, '$P/data', model='$M')
sys.exit(p.returncode)"
    echo "$STAMP" > "$P/stamp"
fi
rm -rf "$P/cache"
XDG_CACHE_HOME="$P/cache" "$C" serve --data "$P/data" --model "$M" --listen 127.0.0.1:0 > "$P/serve.out" &
pid=$!
i=0
while [ ! -s "$P/serve.out" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
url=$(sed -n 's/^clipdex serve: //p' "$P/serve.out")
page=$(node bench/serve_page.js "$url" "a dog on a beach" 7) || page="failed"
kill "$pid"
wait "$pid" || true
echo "page open to first thumbnail ($url, 35 photos): $page"
