#!/bin/bash
# 40-store-crash.t - the store survives SIGKILL at any moment.
#
# A harness (tests/tools/store_harness.c) indexes a few hundred small
# generated files through the store API, as the daemon does, with a delay
# per embedded file standing in for the model.  It is killed with SIGKILL
# at random moments; after every kill `clipdex check` must pass.  Between
# runs the tree changes (rewrites, deletions, additions, copies, renames)
# so every run has work to be killed in, and every few runs the FAISS
# file is deleted or truncated (the next run must rebuild it).  At the
# end an unkilled run completes and every file must be indexed exactly
# once.  CRASH_KILLS sets how many kills must land while the harness is
# working (default 30; more locally: CRASH_KILLS=200 prove ...).
#
# Damage done by the test itself stays until a run gets far enough to
# replace the file: a kill that lands before the harness has opened the
# store (likely on a loaded machine) leaves the truncated file in place,
# and check rightly reports it.  Only that report, and only until a run
# has opened the store, is not counted as a failure.
BUILD=${CLIPDEX_BUILD:-build}
C="$BUILD/bin/clipdex"
H="$BUILD/tests/tools/store_harness"
WANT=${CRASH_KILLS:-30}
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

T=$(mktemp -d /tmp/cdx-crash-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$H" gen "$T/photos" 300 42; ok $? "generate 300 files (with duplicates)"

RANDOM=4242     # reproducible kill times
mid=0           # kills that landed while the harness was working
iter=0
check_fail=0
damaged=0       # the test truncated the FAISS file and no run has opened the store since
unhealed=0
while [ $mid -lt "$WANT" ] && [ $iter -lt $((WANT * 4)) ]; do
    iter=$((iter + 1))
    "$H" index "$T/data" "$T/photos" 3000 2>"$T/run.log" &
    pid=$!
    sleep "0.$(printf %03d $((RANDOM % 250)))"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    grep -q "store_harness: indexed" "$T/run.log" || mid=$((mid + 1))
    grep -q "store_harness: opened" "$T/run.log" && damaged=0
    # a kill before the first run created the store leaves nothing to check
    [ -e "$T/data/clipdex.db" ] || { echo "# kill $iter landed before the store existed"; continue; }
    if ! "$C" check --data "$T/data" >"$T/check.out" 2>&1; then
        # (a third of a small FAISS file may not even hold the header)
        if [ "$damaged" = 1 ] && grep -q "truncated" "$T/check.out" &&
            grep -q "^1 problem found" "$T/check.out"; then
            unhealed=$((unhealed + 1))
            echo "# kill $iter landed before the harness opened the store: our truncated FAISS file is still there"
        else
            check_fail=$((check_fail + 1))
            echo "# check failed after kill $iter:"
            sed 's/^/#   /' "$T/check.out" | head -20
        fi
    fi
    case $((iter % 6)) in
        2) rm -f "$T"/data/index-*.faiss ;;
        5) for f in "$T"/data/index-*.faiss; do [ -f "$f" ] && truncate -s $(( $(stat -c %s "$f") / 3 )) "$f" && damaged=1; done ;;
    esac
    "$H" mutate "$T/photos" $iter
done
echo "# $iter runs, $mid killed while working, $unhealed checks before a run replaced a truncated FAISS file"
[ $mid -ge "$WANT" ]; ok $? "at least $WANT SIGKILLs landed mid-work ($mid in $iter runs)"
[ $check_fail = 0 ]; ok $? "clipdex check passed after every kill ($check_fail failures)"

"$H" index "$T/data" "$T/photos" 0 2>"$T/run.log"; ok $? "a final run completes"
sed 's/^/# /' "$T/run.log"
"$H" verify "$T/data" "$T/photos" 2>"$T/verify.log"; ok $? "every file indexed exactly once"
sed 's/^/# /' "$T/verify.log"
"$C" check --data "$T/data" >"$T/check.out" 2>&1; ok $? "clipdex check passes at the end"
sed 's/^/# /' "$T/check.out"

# The same after the FAISS file is damaged with nobody running: check
# reports it, the next open rebuilds it.
f=$(ls "$T"/data/index-*.faiss | head -1)
truncate -s 100 "$f"
"$C" check --data "$T/data" >"$T/check.out" 2>&1; [ $? = 1 ]; ok $? "check reports a truncated FAISS file (exit 1)"
grep -q "truncated" "$T/check.out"; ok $? "and says what is wrong"
"$H" index "$T/data" "$T/photos" 0 2>"$T/run.log"; ok $? "the next writer opens anyway"
grep -q "rebuilding it from the database" "$T/run.log"; ok $? "with a rebuild progress line"
"$C" check --data "$T/data" >/dev/null 2>&1; ok $? "consistent again"
echo "1..$n"
exit $fail
