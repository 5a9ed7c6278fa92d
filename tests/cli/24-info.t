#!/bin/sh
# 24-info.t - `clipdex info`: table and JSON output of format, size,
# orientation, date (with offset), camera, GPS and warnings, on files of
# the shared corpus; failures on stderr as one line "clipdex: PATH:
# reason" with exit status 3; --probe skips the pixels; usage errors.
#
# Environment: CLIPDEX_BUILD (default build), PYTHON, CLIPDEX_SHARED
# (default ../shared) or CLIPDEX_CORPUS.
B=${CLIPDEX_BUILD:-build}
C="$B/bin/clipdex"
PY=${PYTHON:-/usr/bin/python3}
CORPUS=${CLIPDEX_CORPUS:-${CLIPDEX_SHARED:-../shared}/corpus}
if [ ! -f "$CORPUS/exif/exiftool/Apple.jpg" ]; then
    echo "1..0 # SKIP no corpus at $CORPUS (set CLIPDEX_SHARED)"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cdx-info.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

APPLE=$CORPUS/exif/exiftool/Apple.jpg
HEIC=$CORPUS/formats/heif/ianare/IMG_5195.HEIC
L6=$CORPUS/exif/orientation/recurser/Landscape_6.jpg
O9=$CORPUS/hostile/exif/exif_orientation_9.jpg
CUT=$CORPUS/hostile/truncated/trunc_jpeg_02885_of_05770.jpg
WEBP=$CORPUS/formats/webp/exiv2/exiv2-bug1199.webp

# json: check FILE PYTHON-EXPRESSION-ON-d
json_is() {
    "$PY" -c 'import json,sys
d = json.loads(open(sys.argv[1]).readline())
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

"$C" info --format json "$APPLE" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc = 0 ] && json_is "$tmp/out" 'd["format"] == "jpeg" and (d["width"], d["height"]) == (8, 8) and d["make"] == "Apple" and d["model"] == "iPhone 7" and d["taken"] == "2016-09-28T18:18:05" and d["taken_unix"] == 1475086685 and abs(d["gps"]["lat"] - 53.38285) < 1e-4 and abs(d["gps"]["lon"] + 1.45668) < 1e-4 and d["warning"] is None and d["orientation"] == 1' && [ ! -s "$tmp/err" ]
ok $? "JPEG: camera, date, GPS in JSON: $(cat "$tmp/out")"

"$C" info --format json "$HEIC" >"$tmp/out" 2>"$tmp/err"
json_is "$tmp/out" 'd["format"] == "heif" and d["taken"] == "2021-04-11T15:47:53-05:00" and d["tz_offset_min"] == -300 and d["model"] == "iPhone 11 Pro Max" and d["gps"] is not None'
ok $? "HEIC: date with its offset, camera, GPS"

"$C" info --format json "$L6" >"$tmp/out" 2>"$tmp/err"
json_is "$tmp/out" 'd["orientation"] == 6 and (d["width"], d["height"]) == (1200, 1800) and d["taken"] is None and d["gps"] is None'
ok $? "orientation 6, stored size 1200x1800, no date, no GPS"

"$C" info --format json "$O9" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc = 0 ] && json_is "$tmp/out" 'd["orientation"] == 1 and "invalid EXIF Orientation 9" in d["warning"]' && [ ! -s "$tmp/err" ]
ok $? "Orientation=9: orientation 1, a warning, exit 0, nothing on stderr"

"$C" info "$O9" "$WEBP" >"$tmp/out" 2>"$tmp/err"
rc=$?
head -n 1 "$tmp/out" | grep -q '^FORMAT  *SIZE  *ORIENT  *TAKEN  *CAMERA  *GPS  *FILE$' &&
    grep -q "^jpeg  *227x149  *1 .*exif_orientation_9.jpg\$" "$tmp/out" &&
    grep -q '^    warning: invalid EXIF Orientation 9 (ignored)$' "$tmp/out" &&
    grep -q '^webp  *1200x800  *1  *2015-07-16 15:38:54  *NIKON CORPORATION NIKON D5300  *51.178282,-1.826640 .*exiv2-bug1199.webp$' "$tmp/out" &&
    [ $rc = 0 ]
ok $? "table: header, one row per file, warning line"
sed 's/^/# /' "$tmp/out"

"$C" info "$CUT" "$APPLE" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc = 3 ] && [ "$(cat "$tmp/err")" = "clipdex: $CUT: truncated JPEG data" ] && grep -q 'Apple.jpg$' "$tmp/out" &&
    ! grep -q trunc_jpeg "$tmp/out"
ok $? "a truncated JPEG fails (exit $rc, one line on stderr), the other file is still shown"

"$C" info --format json "$CUT" >"$tmp/out" 2>/dev/null
json_is "$tmp/out" 'set(d) == {"file", "error"} and d["error"] == "truncated JPEG data"'
ok $? "JSON error object: $(cat "$tmp/out")"

"$C" info --probe "$CUT" >"$tmp/out" 2>"$tmp/err"
ok $? "--probe reads only the headers: the truncated JPEG passes"

"$C" info --format json "$CORPUS/hostile/empty/empty.jpg" "$tmp/none.jpg" "$CORPUS/hostile/wrong-content/plain_text.jpg" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc = 3 ] && [ "$(wc -l <"$tmp/err")" -eq 3 ] && [ "$(wc -l <"$tmp/out")" -eq 3 ] &&
    grep -q 'empty.jpg: empty file$' "$tmp/err" && grep -q 'none.jpg: No such file or directory$' "$tmp/err" &&
    grep -q 'plain_text.jpg: not a supported image file' "$tmp/err"
ok $? "empty, missing and text files: three one-line errors, exit 3"

"$C" info >/dev/null 2>&1
[ $? = 2 ]
ok $? "no IMAGE: usage error (exit 2)"
"$C" info --format xml "$APPLE" >/dev/null 2>&1
[ $? = 2 ]
ok $? "--format xml: usage error (exit 2)"

echo "1..$n"
