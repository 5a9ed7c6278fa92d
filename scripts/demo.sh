#!/bin/sh
# demo.sh - the main job end to end on a fresh machine, with a small
# random-weight model in the real Hugging Face format and generated images.
# Random weights show the pipeline working, not semantic quality: see the
# README for the two lines that switch to a real model.
set -eu
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
CLIPDEX="$BUILD/bin/clipdex"
DEMO=${DEMO_DIR:-$BUILD/demo}
MODEL=${CLIPDEX_MODEL:-$DEMO/model}

mkdir -p "$DEMO"
if [ ! -f "$MODEL/config.json" ]; then
    echo "demo: writing a random-weight ViT-B/32-shaped CLIP model to $MODEL"
    $PYTHON tests/tools/gen_model.py "$MODEL" --preset vitb32
fi
$PYTHON tests/tools/make_testdata.py --out "$BUILD/testdata" --only tiny >/dev/null
IMAGES="$BUILD/testdata/images"

echo "demo: model summary"
"$CLIPDEX" model --model "$MODEL"
echo
echo "demo: tokenizing a query"
"$CLIPDEX" tokenize --model "$MODEL" "kids on a red sled"
echo
echo "demo: embedding two texts and three images (first 4 of 512 numbers shown)"
"$CLIPDEX" embed --model "$MODEL" --format tsv \
    --text "kids on a red sled" --text "sunset over water" \
    --image "$IMAGES/photo420.jpg" --image "$IMAGES/gray.png" --image "$IMAGES/palette.png" |
    cut -f1-6
