#!/bin/bash
# 40-store-concurrency.t - readers querying in a loop while a writer adds,
# removes and renames, with frequent FAISS saves (so readers also replay
# the log and reload pruned files): no reader ever gets an error or an
# inconsistent answer (its own file not found, a score that does not
# match the stored vector), and the store checks clean afterwards.
BUILD=${CLIPDEX_BUILD:-build}
C="$BUILD/bin/clipdex"
H="$BUILD/tests/tools/store_harness"
SECS=${CONCURRENCY_SECONDS:-4}
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

T=$(mktemp -d /tmp/cdx-conc-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$H" gen "$T/photos" 120 7 && "$H" index "$T/data" "$T/photos" 0 2>/dev/null
ok $? "a store of 120 files"

"$H" churn "$T/data" "$SECS" 2>"$T/w.log" & w=$!
"$H" reader "$T/data" "$T/photos" "$SECS" 2>"$T/r1.log" & r1=$!
"$H" reader "$T/data" "$T/photos" "$SECS" 2>"$T/r2.log" & r2=$!
# check (a reader too) runs while the writer writes
sleep 1
"$C" check --data "$T/data" >"$T/c.log" 2>&1; c=$?
wait $w; ok $? "writer: $(tail -1 "$T/w.log" | sed 's/^store_harness: //')"
wait $r1; ok $? "reader 1: $(tail -1 "$T/r1.log" | sed 's/^store_harness: //')"
wait $r2; ok $? "reader 2: $(tail -1 "$T/r2.log" | sed 's/^store_harness: //')"
cat "$T/r1.log" "$T/r2.log" | grep -v "reader: [0-9]* queries" | head -10 | sed 's/^/# /'
[ $c = 0 ]; ok $? "clipdex check during the writes: consistent"
sed 's/^/# /' "$T/c.log"

"$H" churn "$T/data" 3 2>/dev/null & w=$!
sleep 0.5
"$C" check --repair --data "$T/data" >"$T/c.log" 2>&1; c=$?
wait $w
[ $c = 3 ] && grep -q "another writer" "$T/c.log" && grep -q "stop clipdexd" "$T/c.log"
ok $? "check --repair refuses while a writer runs (exit $c)"
sed 's/^/# /' "$T/c.log"
"$C" check --data "$T/data" >/dev/null 2>&1; ok $? "consistent afterwards"
echo "1..$n"
exit $fail
