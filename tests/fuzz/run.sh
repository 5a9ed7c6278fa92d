#!/bin/sh
# run.sh DIR SECONDS CORPUS OUT - fuzz the image layer with libFuzzer.
#
#   DIR      where the fuzzers were built (make fuzz-build: build-asan/image)
#   SECONDS  total time, split 3:1 between fuzz_decode and fuzz_exif
#   CORPUS   seed files (the shared corpus): every regular file, its first
#            64 KiB (symlinks are skipped: the corpus has a directory link
#            to itself, which libFuzzer's directory walk would follow)
#   OUT      where new inputs are kept (reused by the next run) and crash
#            artifacts are written (OUT/crash-*)
#
# Exit status 0 when neither fuzzer found a crash, leak, timeout or
# contract violation; otherwise libFuzzer's report is on stderr and the
# reproducer is in OUT.  `make fuzz` runs this for FUZZ_TIME seconds;
# tests/cli/23-image-fuzz.t runs it for 60 seconds from a fresh OUT.
set -u
DIR=$1
SECONDS_TOTAL=$2
CORPUS=$3
OUT=$4
MAXLEN=65536

mkdir -p "$OUT/seeds" "$OUT/decode" "$OUT/exif" || exit 2
if [ -z "$(ls -A "$OUT/seeds")" ]; then
    n=0
    find "$CORPUS" -type f -print | while IFS= read -r f; do
        n=$((n + 1))
        head -c $MAXLEN "$f" >"$OUT/seeds/$n" 2>/dev/null
    done
fi

t_decode=$((SECONDS_TOTAL * 3 / 4))
t_exif=$((SECONDS_TOTAL - t_decode))
[ "$t_exif" -ge 1 ] || t_exif=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
for target in decode exif; do
    eval t=\$t_$target
    echo "fuzz_$target: $t s, seeds $OUT/seeds, new inputs in $OUT/$target" >&2
    "$DIR/fuzz_$target" -max_total_time="$t" -max_len=$MAXLEN -timeout=20 \
        -rss_limit_mb=2560 -print_final_stats=1 \
        -artifact_prefix="$OUT/" "$OUT/$target" "$OUT/seeds" || rc=1
done
exit $rc
