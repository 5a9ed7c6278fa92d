#!/bin/sh
# assemble.sh OUT - image-caption pairs for the real-data experiment
# (experiments/real-data/README.md) from Debian and npm packages, under
# OUT (outside the repository; nothing here is committed but the recipe).
#
#   openclipart-png          /usr/share/openclipart/png: captions from the
#                            file and folder names
#   openmoji (npm)           SVGs rendered with rsvg-convert; captions from
#                            data/openmoji.json (annotation, group, tags)
#   tuxpaint-stamps-default  /usr/share/tuxpaint/stamps: the stamp and the
#                            first line of its .txt description; never in
#                            training from scratch (the out-of-domain set)
#
# Installs what is missing with apt-get / npm (these packages are the
# experiment's, not clipdex's: they are not in scripts/deps.sh).  Running
# it again reuses what is there (idempotent): images are converted once.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OPENMOJI_VERSION=17.0.0
PY=/usr/bin/python3
OUT=$(realpath -m "$OUT")
case "$OUT/" in "$REPO"/*) echo "$0: $OUT is inside the repository: give a directory outside it" >&2; exit 2;; esac
mkdir -p "$OUT"

need_apt=
[ -d /usr/share/openclipart/png ] || need_apt="$need_apt openclipart-png"
[ -d /usr/share/tuxpaint/stamps ] || need_apt="$need_apt tuxpaint-stamps-default"
command -v rsvg-convert >/dev/null || need_apt="$need_apt librsvg2-bin"
$PY -c 'import PIL' 2>/dev/null || need_apt="$need_apt python3-pil"
command -v npm >/dev/null || need_apt="$need_apt npm"
if [ -n "$need_apt" ]; then
    echo "installing:$need_apt"
    apt-get update -q && apt-get install -y -q --no-install-recommends $need_apt
fi

if [ ! -f "$OUT/src/openmoji/package/data/openmoji.json" ]; then
    mkdir -p "$OUT/src/openmoji"
    (cd "$OUT/src/openmoji" && npm pack --silent "openmoji@$OPENMOJI_VERSION" >/dev/null &&
     tar xzf "openmoji-$OPENMOJI_VERSION.tgz" package/data/openmoji.json package/color/svg)
fi

# the model to train from scratch: the experiment's config and processor,
# and the CLIP tokenizer files clipdex ships (data/clip: OpenAI's BPE, MIT)
mkdir -p "$OUT/tiny-clip"
cp "$HERE/tiny-clip/config.json" "$HERE/tiny-clip/preprocessor_config.json" "$OUT/tiny-clip/"
VOCAB=${CLIP_TOKENIZER_DIR:-$REPO/data/clip}
cp "$VOCAB/vocab.json" "$VOCAB/merges.txt" "$OUT/tiny-clip/"

$PY "$HERE/assemble.py" "$OUT"
