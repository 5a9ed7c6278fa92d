#!/bin/bash
# 40-store-check.t - `clipdex check [--data DIR] [--repair]`: exit codes,
# messages, and repair of a damaged store.
BUILD=${CLIPDEX_BUILD:-build}
C="$BUILD/bin/clipdex"
PY=${PYTHON:-/usr/bin/python3}
LIBDIR=$(cd "$(dirname "$0")" && pwd)
TINY="$LIBDIR/../../build/testdata/models/tiny"
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
# The oracle: Python's sqlite3 and hashlib (tests/cli/daemonlib.py), not clipdex.
lib() { "$PY" -c "import sys; sys.path.insert(0, sys.argv[1]); import daemonlib as lib; $1" "$LIBDIR" "${@:2}"; }
index() { "$C" index --model "$TINY" --data "$T/data" "$T/photos" 2>"$T/index.log"; }
matches_disk() { lib 'why = lib.store_matches_disk(sys.argv[2], sys.argv[3]); why and print(why); sys.exit(1 if why else 0)' "$T/data" "$T/photos"; }
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

# 20 distinct images and 4 copies (a copy shares its original's vector).
lib 'import os, shutil
d = sys.argv[2]; os.makedirs(d + "/sub")
for i in range(20): lib.write_file("%s/p%02d.jpg" % (d, i), lib.distinct_image("check-%d" % i))
for i in range(4): shutil.copy("%s/p%02d.jpg" % (d, i), "%s/sub/copy%d.jpg" % (d, i))' "$T/photos"
index && matches_disk >/dev/null; ok $? "a store of 24 files"
"$C" check --data "$T/data" >"$T/out" 2>&1; ok $? "consistent store: exit 0"
grep -q "^consistent: 24 files (0 failed), 20 vectors, 1 models" "$T/out"; ok $? "summary line"
CLIPDEX_DATA="$T/data" "$C" check >/dev/null 2>&1; ok $? "CLIPDEX_DATA names the store"

# An orphan vector and a file pointing to a vector of other content.
sql "$T/data" "INSERT INTO vectors(model_id, hash, data, created_at) SELECT model_id, x'01', data, 0 FROM vectors LIMIT 1;
               UPDATE files SET vector_id = (SELECT min(id) FROM vectors) WHERE id = (SELECT max(id) FROM files);"
"$C" check --data "$T/data" >"$T/out" 2>&1; [ $? = 1 ]; ok $? "damaged store: exit 1"
grep -q "orphan vector" "$T/out"; ok $? "reports the orphan"
grep -q "vector of other content" "$T/out"; ok $? "reports the file pointing to other content"
grep -q "problems found" "$T/out"; ok $? "summary counts problems"
sed 's/^/# /' "$T/out"
"$C" check --repair --data "$T/data" >"$T/out" 2>&1; ok $? "--repair: exit 0"
sed 's/^/# /' "$T/out"
"$C" check --data "$T/data" >/dev/null 2>&1; ok $? "consistent after repair"
index && matches_disk >"$T/out"
ok $? "the next index run re-adds the file repair dropped; all indexed once"
sed 's/^/# /' "$T/out"

# A store from a newer clipdex is refused, not touched.
sql "$T/data" "PRAGMA user_version = 99"
"$C" check --data "$T/data" >"$T/out" 2>&1; [ $? = 3 ] && grep -q "newer" "$T/out"
ok $? "newer schema: exit 3, 'newer' in the message"
echo "1..$n"
exit $fail
