#!/bin/sh
# bench/run-precision.sh BUILD - the CLIP engine at float32, bf16 and int8
# against PyTorch float32 and PyTorch bf16 in the same run: ViT-B/32
# sizes, random weights (build/testdata/models/vitb32).
#
# torch f32: the faster of 1 thread and 2 threads with
# OMP_WAIT_POLICY=PASSIVE (as bench/run-engine.sh).  torch bf16: every
# weight and the pixels cast to torch.bfloat16, torch.set_num_threads(2).
# Reported: images/s at batch 1, 8, 16; ms for a 10-token text query;
# peak RSS of the text-only process; ratios to torch bf16.
set -eu
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-7}
make -s "$BUILD/bench/engine_bench" BUILD="$BUILD" >/dev/null
$PYTHON tests/tools/make_testdata.py --out build/testdata --only vitb32
M=build/testdata/models/vitb32
B="$BUILD/bench/engine_bench"

out=$(mktemp -d)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for p in f32 bf16 int8; do
    for bs in 1 8 16; do
        $B $M images $bs $REPS $p > "$out/c_${p}_img_$bs"
    done
    $B $M text 10 31 $p > "$out/c_${p}_text"
done
OMP_NUM_THREADS=1 $PYTHON bench/torch_baseline.py $M --threads 1 --reps "$REPS" > "$out/t1"
OMP_WAIT_POLICY=PASSIVE $PYTHON bench/torch_baseline.py $M --threads 2 --reps "$REPS" > "$out/t2"
$PYTHON bench/torch_baseline.py $M --threads 2 --reps "$REPS" --dtype bf16 > "$out/tb"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
printf '%-22s %8s %8s %8s %9s %9s %9s %9s\n' "" f32 bf16 int8 torch-f32 torch-bf16 bf16/tb int8/tb
for bs in 1 8 16; do
    f=$(val "$out/c_f32_img_$bs" images_per_s_median); b=$(val "$out/c_bf16_img_$bs" images_per_s_median)
    i=$(val "$out/c_int8_img_$bs" images_per_s_median)
    t1=$(val "$out/t1" "img_s_b$bs"); t2=$(val "$out/t2" "img_s_b$bs"); tb=$(val "$out/tb" "img_s_b$bs")
    awk -v f="$f" -v b="$b" -v i="$i" -v t1="$t1" -v t2="$t2" -v tb="$tb" -v bs="$bs" 'BEGIN {
        t = t1 > t2 ? t1 : t2
        printf "%-22s %8.2f %8.2f %8.2f %9.2f %9.2f %8.2fx %8.2fx\n", "images/s batch " bs, f, b, i, t, tb, b / tb, i / tb }'
done
f=$(val "$out/c_f32_text" text_ms_median); b=$(val "$out/c_bf16_text" text_ms_median)
i=$(val "$out/c_int8_text" text_ms_median)
t1=$(val "$out/t1" text_ms_10); t2=$(val "$out/t2" text_ms_10); tb=$(val "$out/tb" text_ms_10)
awk -v f="$f" -v b="$b" -v i="$i" -v t1="$t1" -v t2="$t2" -v tb="$tb" 'BEGIN {
    t = t1 < t2 ? t1 : t2
    printf "%-22s %8.2f %8.2f %8.2f %9.2f %9.2f %8.2fx %8.2fx\n", "text ms (10 tokens)", f, b, i, t, tb, tb / b, tb / i }'
echo "clipdex text-only peak RSS MB: f32 $(val "$out/c_f32_text" peak_rss_mb), bf16 $(val "$out/c_bf16_text" peak_rss_mb), int8 $(val "$out/c_int8_text" peak_rss_mb)"
echo "clipdex open+prepare ms (text-only): f32 $(val "$out/c_f32_text" open_ms), bf16 $(val "$out/c_bf16_text" open_ms), int8 $(val "$out/c_int8_text" open_ms)"
rm -rf "$out"
