#!/bin/sh
# bench/run-train.sh [BUILD] - training speed of `clipdex train` against
# PyTorch training the reference model (tests/ref/train_ref.py) in the same
# run: same model, pairs, batch and threads, float32, full fine-tuning
# (numbers, never pass/fail).
#
# pairs/s of a training step (forward of both towers, CLIP loss, backward,
# AdamW), the first step left out as warm-up on both sides.
# MODEL (default the ViT-B/32-shaped random model), BATCH (16), STEPS (4).
# Both use every core (clipdex's pool is sized to the online CPUs, torch is
# given as many threads).  Run on a quiet machine.
set -eu
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
MODEL=${MODEL:-build/testdata/models/vitb32}
BATCH=${BATCH:-16}
STEPS=${STEPS:-4}
THREADS=$(nproc)
make -s "$BUILD/bin/clipdex" BUILD="$BUILD" >/dev/null
[ -d "$MODEL" ] || $PYTHON tests/tools/make_testdata.py --out build/testdata --only vitb32

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# BATCH pairs of generated 224x224 pictures with short captions
$PYTHON - "$out" "$BATCH" <<'PY'
import os, sys
import numpy as np
from PIL import Image
d, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
words = ["red", "green", "blue", "cat", "dog", "car", "tree", "house", "beach", "mountain"]
with open(os.path.join(d, "pairs.tsv"), "w") as f:
    for i in range(n):
        a = (rng.random((224, 224, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(os.path.join(d, "%03d.png" % i))
        f.write("%03d.png\ta photo of a %s %s\n" % (i, rng.choice(words), rng.choice(words)))
PY
echo "model $MODEL, batch $BATCH, $STEPS steps, $THREADS threads"
"$BUILD/bin/clipdex" train --model "$MODEL" --data "$out/pairs.tsv" \
    --out "$out/model" --batch "$BATCH" --steps "$STEPS" --order file --log "$out/log" >/dev/null 2>&1
c=$(awk -v B="$BATCH" 'NR == 1 {t1 = $4} {t = $4; n = NR} END {printf "%.3f", (t - t1) / (n - 1)}' "$out/log")
t=$(OMP_NUM_THREADS=$THREADS $PYTHON bench/train_torch.py "$MODEL" "$out/pairs.tsv" "$BATCH" "$STEPS" "$THREADS")
awk -v c="$c" -v t="$t" -v B="$BATCH" 'BEGIN {
    printf "%-8s %10s %10s\n", "", "s/step", "pairs/s"
    printf "%-8s %10.3f %10.1f\n", "clipdex", c, B / c
    printf "%-8s %10.3f %10.1f\n", "torch", t, B / t
    printf "clipdex / torch: %.2fx\n", t / c }'
