#!/bin/sh
# 21-image-corpus.t - the whole shared corpus through cdx_image_decode:
# MANIFEST expectations, Pillow agreement (WebP/GIF/TIFF), HEIF sizes,
# EXIF metadata, orientation samples upright, clean one-line failures,
# nothing printed by any decoder.  The checks are in 21-image-corpus.py.
#
# Environment: CLIPDEX_BUILD (default build), PYTHON (default
# /usr/bin/python3), CLIPDEX_SHARED (default ../shared; the corpus is
# $CLIPDEX_SHARED/corpus, or CLIPDEX_CORPUS).
B=${CLIPDEX_BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
CORPUS=${CLIPDEX_CORPUS:-${CLIPDEX_SHARED:-../shared}/corpus}
if [ ! -x "$B/tests/imgcheck" ]; then
    echo "1..0 # SKIP $B/tests/imgcheck is not built (make tests-build)"
    exit 0
fi
if [ ! -f "$CORPUS/MANIFEST.tsv" ]; then
    echo "1..0 # SKIP no corpus at $CORPUS (set CLIPDEX_SHARED)"
    exit 0
fi
if ! "$PY" -c 'import PIL, numpy' 2>/dev/null; then
    echo "1..0 # SKIP $PY has no PIL/numpy"
    exit 0
fi
exec "$PY" tests/cli/21-image-corpus.py --corpus "$CORPUS" --imgcheck "$B/tests/imgcheck"
