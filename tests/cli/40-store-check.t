#!/bin/bash
# 40-store-check.t - `clipdex check [--data DIR] [--repair]`: exit codes,
# messages, and repair of a damaged store.
BUILD=${CLIPDEX_BUILD:-build}
C="$BUILD/bin/clipdex"
H="$BUILD/tests/tools/store_harness"
PY=${PYTHON:-/usr/bin/python3}
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
sql() { "$PY" -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' "$1/clipdex.db" "$2"; }

T=$(mktemp -d /tmp/cdx-check-XXXXXX)
trap 'rm -rf "$T"' EXIT

"$C" check --data "$T/none" >"$T/out" 2>&1; [ $? = 3 ]; ok $? "no store: exit 3"
grep -q "no index store" "$T/out" && grep -q "clipdex index" "$T/out"; ok $? "and the message says how to make one"
"$C" check --data >/dev/null 2>&1; [ $? = 2 ]; ok $? "--data without a value: exit 2"
"$C" check extra >/dev/null 2>&1; [ $? = 2 ]; ok $? "stray argument: exit 2"
env -u CLIPDEX_DATA -u XDG_DATA_HOME HOME="$T/home" "$C" check >"$T/out" 2>&1; [ $? = 3 ]
ok $? "default data directory is under \$HOME/.local/share/clipdex"
grep -q "$T/home/.local/share/clipdex" "$T/out"; ok $? "and named in the message"

"$H" gen "$T/photos" 60 5 && "$H" index "$T/data" "$T/photos" 0 2>/dev/null; ok $? "a store of 60 files"
"$C" check --data "$T/data" >"$T/out" 2>&1; ok $? "consistent store: exit 0"
grep -q "^consistent: 60 files (0 failed), 54 vectors, 1 models" "$T/out"; ok $? "summary line"
CLIPDEX_DATA="$T/data" "$C" check >/dev/null 2>&1; ok $? "CLIPDEX_DATA names the store"

# An orphan vector and a file pointing to a vector of other content.
sql "$T/data" "INSERT INTO vectors(model_id, hash, data, created_at) VALUES (1, x'01', zeroblob(128), 0);
               UPDATE files SET vector_id = (SELECT min(id) FROM vectors) WHERE id = (SELECT max(id) FROM files);"
"$C" check --data "$T/data" >"$T/out" 2>&1; [ $? = 1 ]; ok $? "damaged store: exit 1"
grep -q "orphan vector" "$T/out"; ok $? "reports the orphan"
grep -q "vector of other content" "$T/out"; ok $? "reports the file pointing to other content"
grep -q "problems found" "$T/out"; ok $? "summary counts problems"
sed 's/^/# /' "$T/out"
"$C" check --repair --data "$T/data" >"$T/out" 2>&1; ok $? "--repair: exit 0"
sed 's/^/# /' "$T/out"
"$C" check --data "$T/data" >/dev/null 2>&1; ok $? "consistent after repair"
"$H" index "$T/data" "$T/photos" 0 2>/dev/null && "$H" verify "$T/data" "$T/photos" 2>/dev/null
ok $? "the next index run re-adds the file repair dropped; all indexed once"

# A store from a newer clipdex is refused, not touched.
sql "$T/data" "PRAGMA user_version = 99"
"$C" check --data "$T/data" >"$T/out" 2>&1; [ $? = 3 ] && grep -q "newer" "$T/out"
ok $? "newer schema: exit 3, 'newer' in the message"
echo "1..$n"
exit $fail
