#!/bin/sh
# 20-preprocess.t - image decoding and CLIP preprocessing, checked against
# Pillow and an independent transformers-style reference
# (tests/tools/ref_preprocess.py), plus corrupt and hostile files.
#
#   1. images generated with PIL (JPEG 4:2:0/4:2:2/4:4:4, progressive, grey,
#      CMYK; PNG grey/palette/RGBA/LA/1-bit/16-bit/Adam7/tRNS/gAMA; odd
#      sizes) and every JPEG/PNG of the shared corpus: the decoded RGB must
#      equal Pillow's convert("RGB") byte for byte, and the tensors of
#      several preprocessor configs must be within 1e-6 of the reference;
#      where Pillow refuses a file clipdex must refuse it too.
#   2. corrupt and hostile files fail with exit status 1 and exactly one
#      line "PATH: reason" (no crash, no hang); odd names still decode.
#   3. preprocessor_config.json errors name the file and the key.
#
# Run from the repository root.  Environment: CLIPDEX_BUILD (default
# build), PYTHON (default /usr/bin/python3), CLIPDEX_CORPUS (default
# $CLIPDEX_SHARED/corpus, CLIPDEX_SHARED defaulting to ../shared; the
# corpus parts are skipped without it).

B=${CLIPDEX_BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
CORPUS=${CLIPDEX_CORPUS:-${CLIPDEX_SHARED:-../shared}/corpus}
DUMP=$B/tests/preprocess_dump
REF=tests/tools/ref_preprocess.py

if [ ! -x "$DUMP" ]; then
    echo "1..0 # SKIP $DUMP is not built (make tests-build)"
    exit 0
fi
if ! "$PY" -c 'import PIL, numpy' 2>/dev/null; then
    echo "1..0 # SKIP $PY has no PIL/numpy"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cdx-preprocess.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

n=0
# TAP descriptions are one line: file names may hold newlines.
ok() { n=$((n + 1)); printf 'ok %d - %s\n' $n "$(printf '%s' "$*" | tr '\n' '?')"; }
not_ok() { n=$((n + 1)); printf 'not ok %d - %s\n' $n "$(printf '%s' "$*" | tr '\n' '?')"; }
# expect COND DESCRIPTION: COND is a shell test, e.g. '"$rc" = 1'
expect() {
    if eval "$1"; then ok "$2"; else not_ok "$2"; fi
}

# ---- preprocessor configs: the usual one and the corners ----
mkdir -p "$tmp/cfg"
cat >"$tmp/cfg/l336.json" <<'EOF'
{"crop_size": {"height": 336, "width": 336}, "do_center_crop": true,
 "do_normalize": true, "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor",
 "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
 "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
 "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}}
EOF
# crop taller than the resized image: zero padding; scalar mean
cat >"$tmp/cfg/pad.json" <<'EOF'
{"size": 64, "crop_size": {"height": 80, "width": 48}, "image_mean": 0.5,
 "image_std": [0.25, 0.5, 1.0]}
EOF
cat >"$tmp/cfg/exact.json" <<'EOF'
{"size": {"height": 100, "width": 50}, "do_center_crop": false, "rescale_factor": 0.5}
EOF
cat >"$tmp/cfg/nores.json" <<'EOF'
{"do_resize": false, "crop_size": [40, 30], "do_normalize": false}
EOF
cat >"$tmp/cfg/raw.json" <<'EOF'
{"do_rescale": false, "crop_size": 224}
EOF
CONFIGS="default l336 pad exact nores raw"
cfg_path() { if [ "$1" = default ]; then echo -; else echo "$tmp/cfg/$1.json"; fi; }

# Deliberate differences from Pillow (kind, file name, why):
#  refuse = clipdex rejects a file Pillow decodes, decode = the reverse.
# clipdex checks every PNG CRC and reads to IEND; Pillow checks CRCs only
# before the first IDAT and stops reading once the pixels are complete.
cat >"$tmp/known" <<'EOF'
refuse	xcsn0g01.png	IDAT CRC error; Pillow never checks IDAT CRCs
refuse	x_interlaced_chck.png	IDAT CRC error; Pillow never checks IDAT CRCs
refuse	badcrc.png	IDAT CRC error; Pillow never checks IDAT CRCs
refuse	huge_IDAT.png	IDAT length runs past the end of the file
decode	empty_ancillary_chunks.png	empty ancillary chunks are ignored (libpng warns); Pillow's chunk parsers fail on them
decode	a7326ba8f3f4559991126474dd30083d.jpg	libjpeg skips the FF01 (TEM) marker; Pillow's marker parser does not know it
EOF

# ---- 1. generated + corpus images vs Pillow and the reference ----
if "$PY" "$REF" gen "$tmp/gen" >/dev/null; then
    ok "generate test images with PIL"
else
    not_ok "generate test images with PIL"
fi
find "$tmp/gen" -type f | sort >"$tmp/list"
if [ -d "$CORPUS" ]; then
    find "$CORPUS/jpeg" "$CORPUS/png" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \
        -o -iname '*.png' -o -iname '*.mpo' \) | sort >>"$tmp/list"
fi

ref_cfgs=""
for c in $CONFIGS; do ref_cfgs="$ref_cfgs --config $c=$(cfg_path "$c")"; done
# shellcheck disable=SC2086
"$PY" "$REF" expect --list "$tmp/list" --out "$tmp/exp" $ref_cfgs ||
    not_ok "reference run ($REF expect)"

mkdir -p "$tmp/got"
i=0
while IFS= read -r f; do
    set -- -r "$tmp/got/$i.rgb"
    for c in $CONFIGS; do set -- "$@" -c "$(cfg_path "$c")" -t "$tmp/got/$i.$c.f32"; done
    "$DUMP" "$@" "$f" >"$tmp/got/$i.out" 2>"$tmp/got/$i.stderr"
    echo $? >"$tmp/got/$i.rc"
    i=$((i + 1))
done <"$tmp/list"

cmp_cfgs=""
for c in $CONFIGS; do cmp_cfgs="$cmp_cfgs --config $c"; done
# shellcheck disable=SC2086
"$PY" "$REF" compare --list "$tmp/list" --exp "$tmp/exp" --got "$tmp/got" \
    --known "$tmp/known" --root "$(dirname "$CORPUS")" $cmp_cfgs >"$tmp/results" ||
    not_ok "comparison ($REF compare)"
while IFS= read -r line; do
    case $line in
    "ok "*) ok "${line#ok }" ;;
    "not ok "*) not_ok "${line#not ok }" ;;
    *) echo "$line" ;;
    esac
done <"$tmp/results"
expect "[ \$(grep -c '^ok\\|^not ok' \"$tmp/results\") -eq $i ]" "a result for each of the $i images"

# ---- 2. corrupt and hostile files: exit 1, one line "PATH: reason" ----
# A guard only: nothing here should block (a FIFO is opened O_NONBLOCK).
TIMEOUT=
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout 60"
# refuse FILE PATTERN: must fail cleanly with a message matching PATTERN
refuse() {
    $TIMEOUT "$DUMP" "$1" >/dev/null 2>"$tmp/err"
    rc=$?
    msg=$(cat "$tmp/err")
    lines=$(wc -l <"$tmp/err")
    label=${1#"$CORPUS/"}
    case $msg in
    "$1: "$2*) good=1 ;;
    *) good=0 ;;
    esac
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ $good -eq 1 ]; then
        ok "refused cleanly: $label: ${msg#"$1: "}"
    else
        not_ok "refuse $label with '$2': exit $rc, $lines lines: $msg"
    fi
}
# accept FILE: must decode
accept() {
    if "$DUMP" "$1" >/dev/null 2>"$tmp/err"; then
        ok "decodes: $2"
    else
        not_ok "decode $2: $(cat "$tmp/err")"
    fi
}

echo "not an image" >"$tmp/plain.png"
: >"$tmp/empty.jpg"
printf '\211PNG\r' >"$tmp/short.png"
mkdir "$tmp/adir.jpg"
ln -s loop-b.jpg "$tmp/loop-a.jpg"
ln -s loop-a.jpg "$tmp/loop-b.jpg"
refuse "$tmp/plain.png" "not a supported image file"
refuse "$tmp/empty.jpg" "empty file"
refuse "$tmp/short.png" "truncated PNG data"
refuse "$tmp/adir.jpg" "not a regular file"
refuse "$tmp/loop-a.jpg" "Too many levels of symbolic links"
refuse "$tmp/missing.jpg" "No such file or directory"
if mkfifo "$tmp/fifo.jpg" 2>/dev/null; then
    # must not block waiting for a writer
    refuse "$tmp/fifo.jpg" "not a regular file"
fi

if [ -d "$CORPUS" ]; then
    for f in "$CORPUS"/hostile/truncated/*.jpg; do refuse "$f" "truncated JPEG data"; done
    for f in "$CORPUS"/hostile/truncated/*.png; do refuse "$f" "truncated PNG data"; done
    refuse "$CORPUS/hostile/empty/empty.jpg" "empty file"
    refuse "$CORPUS/hostile/wrong-content/plain_text.jpg" "not a supported image file"
    refuse "$CORPUS/hostile/bad-crc/ihdr_crc_inverted.png" "PNG CRC error in IHDR"
    refuse "$CORPUS/hostile/huge-dimensions/png_100000x100000_rgb8.png" "image is 100000x100000"
    refuse "$CORPUS/hostile/huge-dimensions/jpeg_65535x65535.jpg" "Maximum supported image dimension"
    refuse "$CORPUS/jpeg/gdk-pixbuf/large.jpg" "image is 22500x33300"
    refuse "$CORPUS/jpeg/libjpeg-turbo/testorig12.jpg" "unsupported: 12-bit JPEG"
    refuse "$CORPUS/png/pngsuite/xcsn0g01.png" "PNG CRC error in IDAT"
    refuse "$CORPUS/png/pngsuite/xhdn0g08.png" "PNG CRC error in IHDR"
    for f in "$CORPUS"/png/pngsuite/xs*.png "$CORPUS"/png/pngsuite/xcrn0g04.png \
        "$CORPUS"/png/pngsuite/xlfn0g04.png; do
        refuse "$f" "not a supported image file"
    done
    for f in "$CORPUS"/png/pngsuite/xc[19]*.png "$CORPUS"/png/pngsuite/xd*.png; do
        refuse "$f" "PNG error: "
    done
    for f in "$CORPUS"/hostile/names/* "$CORPUS"/hostile/exif/*; do
        accept "$f" "hostile/${f#"$CORPUS/hostile/"}"
    done
    deep=$(find "$CORPUS/hostile/deep" -type f -name '*.jpg' | head -n 1)
    [ -n "$deep" ] && accept "$deep" "a file 48 directories deep"
fi

# ---- 3. preprocessor_config.json errors name the file and the key ----
# cfg_error JSON PATTERN: loading must fail with "FILE: PATTERN"
cfg_error() {
    printf '%s\n' "$1" >"$tmp/bad.json"
    "$DUMP" -c "$tmp/bad.json" -t "$tmp/out.f32" "$tmp/gen/p_rgb_3x3.png" >/dev/null 2>"$tmp/err"
    rc=$?
    msg=$(cat "$tmp/err")
    case $msg in
    "$tmp/bad.json: "$2*) good=1 ;;
    *) good=0 ;;
    esac
    if [ "$rc" -eq 1 ] && [ $good -eq 1 ]; then
        ok "config $1 refused: ${msg#"$tmp/bad.json: "}"
    else
        not_ok "config $1: expected '$2', got exit $rc: $msg"
    fi
}
cfg_error '{"size": "big"}' "key 'size'"
cfg_error '{"size": {"longest_edge": 10}}' "key 'size'"
cfg_error '{"crop_size": {"height": 10}}' "key 'crop_size'"
cfg_error '{"crop_size": 0}' "key 'crop_size'"
cfg_error '{"image_mean": [1, 2]}' "key 'image_mean'"
cfg_error '{"image_std": [1, 0, 1]}' "key 'image_std'"
cfg_error '{"do_resize": "yes"}' "key 'do_resize'"
cfg_error '{"rescale_factor": "1/255"}' "key 'rescale_factor'"
cfg_error '{"size": 224,' "invalid JSON"
cfg_error '[1, 2]' "not a JSON object"
# BILINEAR (2) is SigLIP 2's (15-siglip.t checks it against Pillow);
# LANCZOS (1) is nobody's here.
printf '{"resample": 1}\n' >"$tmp/lanczos.json"
"$DUMP" -c "$tmp/lanczos.json" -t "$tmp/out.f32" "$tmp/gen/p_rgb_3x3.png" >/dev/null 2>"$tmp/err"
expect "[ $? -eq 1 ] && grep -q 'resample=1 is not supported' \"$tmp/err\"" \
    "resample other than BICUBIC or BILINEAR is refused: $(cat "$tmp/err")"

echo "1..$n"
