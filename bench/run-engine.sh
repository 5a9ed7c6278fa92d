#!/bin/sh
# bench/run-engine.sh BUILD - the CLIP engine against PyTorch on the same
# machine in the same run: ViT-B/32 sizes, random weights, float32.
#
# Torch baselines (see bench/torch_baseline.py): 1 thread (its float32
# matmuls still use OpenBLAS's 2 threads), and 2 threads with
# OMP_WAIT_POLICY=PASSIVE; the faster of the two is "torch".  Reported:
# images/s at batch 1, 8, 16; ms for a 10-token text query; peak RSS.
set -eu
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-7}
make -s "$BUILD/bench/engine_bench" BUILD="$BUILD" >/dev/null
$PYTHON tests/tools/make_testdata.py --out build/testdata --only vitb32
M=build/testdata/models/vitb32
B="$BUILD/bench/engine_bench"

out=$(mktemp -d)
for bs in 1 8 16; do
    $B $M images $bs $REPS > "$out/c_img_$bs"
done
$B $M text 10 31 > "$out/c_text"
OMP_NUM_THREADS=1 $PYTHON bench/torch_baseline.py $M --threads 1 --reps "$REPS" > "$out/t1"
OMP_WAIT_POLICY=PASSIVE $PYTHON bench/torch_baseline.py $M --threads 2 --reps "$REPS" > "$out/t2"

val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
printf '%-28s %10s %10s %10s %8s\n' "" clipdex torch-1t torch-2tP ratio
for bs in 1 8 16; do
    c=$(val "$out/c_img_$bs" images_per_s_median)
    t1=$(val "$out/t1" "img_s_b$bs"); t2=$(val "$out/t2" "img_s_b$bs")
    awk -v c="$c" -v a="$t1" -v b="$t2" -v bs="$bs" 'BEGIN {
        t = a > b ? a : b; printf "%-28s %10.2f %10.2f %10.2f %7.2fx\n", "images/s batch " bs, c, a, b, c / t }'
done
c=$(val "$out/c_text" text_ms_median)
t1=$(val "$out/t1" text_ms_10); t2=$(val "$out/t2" text_ms_10)
p1=$(val "$out/t1" text_ms_10_padded)
awk -v c="$c" -v a="$t1" -v b="$t2" -v p="$p1" 'BEGIN {
    t = a < b ? a : b; printf "%-28s %10.2f %10.2f %10.2f %7.2fx\n", "text ms (10 tokens)", c, a, b, t / c
    printf "%-28s %10s %10.2f\n", "torch text ms padded to 77", "", p }'
echo "clipdex peak RSS MB: images batch 16 $(val "$out/c_img_16" peak_rss_mb), text-only $(val "$out/c_text" peak_rss_mb)"
echo "torch peak RSS MB: $(val "$out/t1" peak_rss_mb)"
rm -rf "$out"
