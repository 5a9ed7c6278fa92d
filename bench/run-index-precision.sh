#!/bin/sh
# bench/run-index-precision.sh BUILD - one-shot indexing end to end at each
# precision (issue 12), with the CPU split between the model and the rest
# (numbers, never pass/fail).
#
# For each of f32, bf16 and int8, in one run:
#   bare   engine_bench MODEL images 16 REPS PRECISION: the model alone,
#          images/s and its CPU per image;
#   index  clipdexd --once --precision P over PHOTOS files made from the
#          shared corpus photos (bench/daemon_bench.py): images/s from the
#          first walk to the last commit, and CPU per image.
# The rest of the CPU per image (index - bare: reading, hashing, decoding
# at DCT scale, EXIF, the pHash, storing) is "decode" below.  With both
# cores busy the best indexing can do is 2 cores / (model + decode CPU per
# image); the last column says how close it gets, i.e. how well decoding
# overlaps the model.
#
# Model: the ViT-B/32-shaped random-weight model.  Run on a quiet machine.
set -eu
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
PHOTOS=${PHOTOS:-400}
REPS=${REPS:-5}
CORES=${CORES:-$(nproc)}
make -s "$BUILD/bench/engine_bench" "$BUILD/bin/clipdexd" BUILD="$BUILD" >/dev/null
$PYTHON tests/tools/make_testdata.py --out build/testdata --only vitb32
M=build/testdata/models/vitb32

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
$PYTHON bench/daemon_bench.py photos "$out/photos" "$PHOTOS" > "$out/photos.txt"
val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
echo "photos: $(val "$out/photos.txt" photos) files from $(val "$out/photos.txt" distinct_sources) corpus photos" \
     "(median $(val "$out/photos.txt" median_megapixels) MP, max $(val "$out/photos.txt" max_megapixels) MP); $CORES cores"
printf '%-6s %10s %10s %12s %12s %12s %14s %8s\n' precision "bare img/s" "index img/s" "model ms/img" \
       "decode ms/img" "index ms/img" "2 cores bound" "reached"
for p in f32 bf16 int8; do
    $PYTHON bench/daemon_bench.py bare "$BUILD" "$M" "$REPS" "$p" > "$out/bare-$p"
    $PYTHON bench/daemon_bench.py once "$BUILD" "$M" "$out/photos" "$p" > "$out/once-$p"
    awk -v p="$p" -v c="$CORES" -v b="$(val "$out/bare-$p" images_per_s_median)" \
        -v r="$(val "$out/once-$p" once_images_per_s)" \
        -v mc="$(val "$out/bare-$p" bare_cpu_ms_per_image)" \
        -v ic="$(val "$out/once-$p" once_cpu_ms_per_image)" 'BEGIN {
        bound = 1000 * c / ic
        printf "%-6s %10.2f %10.2f %12.1f %12.1f %12.1f %14.2f %7.1f%%\n", p, b, r, mc, ic - mc, ic, bound, 100 * r / bound }'
done
