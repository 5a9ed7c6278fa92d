#!/bin/sh
# 22-image-sanitizers.t - every file of the shared corpus through every
# decode path (metadata probe; fast: upright, DCT-scaled, preprocessed;
# exact: full size, preprocessed) with the image layer built with
# AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer at exit):
# build-asan/image/imgcheck, made by `make tests-build`.  Any report makes
# the run exit non-zero; it is shown here.  The three paths must also
# agree on the metadata.
#
# Environment: CLIPDEX_IMGSAN (default build-asan/image), CLIPDEX_SHARED
# (default ../shared) or CLIPDEX_CORPUS.
D=${CLIPDEX_IMGSAN:-build-asan/image}
CORPUS=${CLIPDEX_CORPUS:-${CLIPDEX_SHARED:-../shared}/corpus}
if [ ! -x "$D/imgcheck" ]; then
    echo "1..0 # SKIP $D/imgcheck is not built (make tests-build)"
    exit 0
fi
if [ ! -d "$CORPUS" ]; then
    echo "1..0 # SKIP no corpus at $CORPUS (set CLIPDEX_SHARED)"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cdx-asan.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

echo "1..3"
find "$CORPUS" \( -type f -o -type l \) -print0 >"$tmp/list"
n=$(tr -cd '\0' <"$tmp/list" | wc -c)
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:allocator_may_return_null=1 \
LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$D/imgcheck" -m all -j 2 -o "$tmp/out" -L "$tmp/list" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
if [ $rc -eq 0 ]; then
    echo "ok 1 - $n files, probe + fast + exact paths, clean under ASan+UBSan+LSan"
else
    echo "not ok 1 - sanitizer run exited $rc"
    sed 's/^/# /' "$tmp/stderr" | head -n 80
fi
if [ ! -s "$tmp/stdout" ] && [ ! -s "$tmp/stderr" ]; then
    echo "ok 2 - nothing written to stdout or stderr"
else
    echo "not ok 2 - output on stdout/stderr"
    cat "$tmp/stdout" "$tmp/stderr" | sed 's/^/# /' | head -n 20
fi
bad=$(grep -c '^# INCONSISTENT' "$tmp/out" 2>/dev/null)
recs=$(grep -vc '^#' "$tmp/out" 2>/dev/null)
if [ "${bad:-0}" -eq 0 ] && [ "${recs:-0}" -eq "$n" ]; then
    echo "ok 3 - $recs records; probe, fast and exact agree on every file's metadata"
else
    echo "not ok 3 - $recs of $n records, ${bad:-?} inconsistent"
    grep '^# INCONSISTENT' "$tmp/out" | head -n 10
fi
