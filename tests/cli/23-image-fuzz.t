#!/bin/sh
# 23-image-fuzz.t - a 60-second libFuzzer smoke run of the image layer:
# fuzz_decode (detection, every decoder, EXIF, orientation, both
# preprocessing paths) for 45 s and fuzz_exif (the EXIF reader) for 15 s,
# seeded from the shared corpus, under ASan+UBSan.  Any crash, leak,
# timeout or API-contract violation fails the test and its report and
# reproducer are shown.  `make fuzz` runs the same for longer.
#
# Environment: CLIPDEX_IMGSAN (default build-asan/image), CLIPDEX_SHARED
# (default ../shared) or CLIPDEX_CORPUS, CLIPDEX_FUZZ_TIME (default 60).
D=${CLIPDEX_IMGSAN:-build-asan/image}
CORPUS=${CLIPDEX_CORPUS:-${CLIPDEX_SHARED:-../shared}/corpus}
T=${CLIPDEX_FUZZ_TIME:-60}
if [ ! -x "$D/fuzz_decode" ] || [ ! -x "$D/fuzz_exif" ]; then
    echo "1..0 # SKIP fuzzers not built (they need clang and libclang-rt-14-dev: make deps)"
    exit 0
fi
if [ ! -d "$CORPUS" ]; then
    echo "1..0 # SKIP no corpus at $CORPUS (set CLIPDEX_SHARED)"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cdx-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

echo "1..2"
tests/fuzz/run.sh "$D" "$T" "$CORPUS" "$tmp/out" >"$tmp/log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/log" | tr '\n' ' ')
if [ $rc -eq 0 ]; then
    echo "ok 1 - $T s of fuzzing (decode, exif), no crash; executions: $runs"
else
    echo "not ok 1 - the fuzzers found a problem (exit $rc)"
    grep -E 'ERROR|SUMMARY|==[0-9]+==|#[0-9]+ 0x|Test unit written|Base64' "$tmp/log" | head -n 60 | sed 's/^/# /'
    for f in "$tmp"/out/crash-* "$tmp"/out/leak-* "$tmp"/out/timeout-* "$tmp"/out/oom-*; do
        [ -f "$f" ] && echo "# reproducer: $(basename "$f") ($(wc -c <"$f") bytes)"
    done
fi
cov=$(grep -c 'INITED' "$tmp/log")
if [ "$cov" -eq 2 ]; then
    echo "ok 2 - both fuzzers loaded the corpus seeds: $(grep 'INITED' "$tmp/log" | sed 's/^#[0-9]*[[:space:]]*INITED //' | tr '\n' '|')"
else
    echo "not ok 2 - a fuzzer did not start"
    head -n 20 "$tmp/log" | sed 's/^/# /'
fi
