#!/bin/bash
# 51-config-data-dir.t - every command finds the index store where
# clipdexd does: --data, else clipdex.conf's [store] data_dir, else
# $CLIPDEX_DATA, else $XDG_DATA_HOME/clipdex (man/clipdex.conf.5).  The
# oracle is the directory this script writes into the file and the store
# it builds there with `clipdex index --data` (not clipdex's own output):
# `clipdex check` once ignored the file and looked in ~/.local/share.
BUILD=${CLIPDEX_BUILD:-build}
C="$BUILD/bin/clipdex"
D="$BUILD/bin/clipdexd"
TINY=build/testdata/models/tiny
PY=${PYTHON:-/usr/bin/python3}
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

T=$(mktemp -d /tmp/cdx-confdata-XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/home" "$T/xdg/clipdex" "$T/other"
PYTHONPATH=tests/cli "$PY" -c 'import os, sys, daemonlib as d
os.makedirs(sys.argv[1])
for i in range(12): d.write_file(sys.argv[1] + "/p%02d.jpg" % i, d.distinct_image("conf-%d" % i))' "$T/photos" &&
    "$C" index --model "$TINY" --data "$T/store" "$T/photos" >/dev/null 2>&1; ok $? "a store of 12 files"
printf '[store]\ndata_dir = %s\n' "$T/store" > "$T/xdg/clipdex/clipdex.conf"

# Only the file names the store: no $CLIPDEX_DATA, $HOME elsewhere.
run() { env -u CLIPDEX_DATA -u XDG_DATA_HOME -u CLIPDEX_MODEL HOME="$T/home" XDG_CONFIG_HOME="$T/xdg" "$@"; }

run "$C" check >"$T/out" 2>&1; rc=$?
[ $rc = 0 ] && grep -q "^consistent: 12 files" "$T/out"; ok $? "clipdex check uses [store] data_dir (exit $rc)"
sed 's/^/# /' "$T/out"
run "$C" status >"$T/out" 2>&1; rc=$?
[ $rc = 0 ] && grep -q "^store: *$T/store " "$T/out"; ok $? "clipdex status uses it"
run "$C" stats >"$T/out" 2>&1; rc=$?
[ $rc = 0 ] && grep -q "$T/store" "$T/out"; ok $? "clipdex stats uses it"
run "$D" --check-config 2>/dev/null | grep -q "^data_dir = $T/store\$"; ok $? "clipdexd resolves the same directory"

# Precedence: --data over the file, the file over $CLIPDEX_DATA.
run "$C" check --data "$T/other" >"$T/out" 2>&1; rc=$?
[ $rc = 3 ] && grep -q "no index store in $T/other" "$T/out"; ok $? "--data wins over the file"
run env CLIPDEX_DATA="$T/other" "$C" check >/dev/null 2>&1; ok $? "the file wins over \$CLIPDEX_DATA"

# A broken file is a usage error naming the file and line, for check too.
printf '[store]\ndata_dri = x\n' > "$T/xdg/clipdex/clipdex.conf"
run "$C" check >/dev/null 2>"$T/err"; rc=$?
[ $rc = 2 ] && grep -q "clipdex.conf:2: unknown key 'data_dri'" "$T/err"; ok $? "a broken file: exit 2 naming file and line"
sed 's/^/# /' "$T/err"

echo "1..$n"
exit $fail
