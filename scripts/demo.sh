#!/bin/sh
# demo.sh - the main job end to end on a fresh machine: a random-weight
# CLIP model in the real Hugging Face format (ViT-B/32 sizes), a few dozen
# generated photos (with duplicates made from the test corpus), one-shot
# indexing, a search, a duplicates run and a moderation sweep, with HTML
# galleries.  Random weights show the pipeline working, not search
# quality: the end of the output says how to switch to a real model.
set -eu
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
CLIPDEX="$BUILD/bin/clipdex"
DEMO=${DEMO_DIR:-$BUILD/demo}
MODEL=${CLIPDEX_MODEL:-$DEMO/model}
PHOTOS="$DEMO/photos"
DATA="$DEMO/data"

step() { printf '\n== %s\n' "$*"; }

mkdir -p "$DEMO"
if [ ! -f "$MODEL/config.json" ]; then
    echo "demo: writing a random-weight ViT-B/32-shaped CLIP model to $MODEL"
    $PYTHON tests/tools/gen_model.py "$MODEL" --preset vitb32
fi
step "model"
"$CLIPDEX" model --model "$MODEL" | head -n 3

step "a photo library: generated pictures, copies of corpus photos, one broken file"
n=$($PYTHON tests/tools/query_fixture.py "$PHOTOS")
echo "$n files in $PHOTOS"

step "indexing it once (clipdex index)"
rm -rf "$DATA"
"$CLIPDEX" index --model "$MODEL" --data "$DATA" "$PHOTOS" 2>&1 | tail -n 2
export CLIPDEX_DATA="$DATA"
"$CLIPDEX" stats | sed -n '1,4p'

step 'clipdex search "a dog on a beach" -n 5'
"$CLIPDEX" search --model "$MODEL" -n 5 "a dog on a beach"
"$CLIPDEX" search --model "$MODEL" -n 24 --format html -o "$DEMO/search.html" "a dog on a beach"

step "clipdex similar (an image as the query; its exact copy scores 1)"
"$CLIPDEX" similar --model "$MODEL" -n 3 "$(find "$PHOTOS" -name scene00.jpg)"

step "clipdex dupes (exact and visual duplicates, the copy to keep first)"
"$CLIPDEX" dupes
"$CLIPDEX" dupes --format html -o "$DEMO/dupes.html"

step "clipdex moderate --preset weapons --preset documents (zero-shot CLIP sweep)"
"$CLIPDEX" moderate --model "$MODEL" --preset weapons --preset documents ||
    echo "(nothing reaches the presets' thresholds)"
echo "the five highest probabilities of a flagged label (--threshold 0 -n 5):"
"$CLIPDEX" moderate --model "$MODEL" --preset weapons --preset documents --threshold 0 -n 5 2>/dev/null
"$CLIPDEX" moderate --model "$MODEL" --preset weapons --preset documents --threshold 0 \
    --format html -o "$DEMO/moderate.html" 2>/dev/null

step "galleries"
for g in search dupes moderate; do
    echo "  $(cd "$DEMO" && pwd)/$g.html"
done
cat <<EOM

The model above has random weights: the pipeline is real (decoding, CLIP
preprocessing, both transformers, the index store, FAISS search, pHash
duplicates, zero-shot moderation), the rankings are not meaningful.
For real search quality use OpenAI's weights:

    scripts/get-model openai/clip-vit-base-patch32 ~/models/clip-b32
    clipdex index --model ~/models/clip-b32 ~/Pictures && clipdex search "a dog on a beach"
EOM
