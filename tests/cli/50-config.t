#!/bin/sh
# 50-config.t - clipdexd's command line and configuration file: --version,
# -h, usage errors, --check-config on good and bad files (every error names
# the file, the line and the key), flags overriding the file, the
# $XDG_CONFIG_HOME default, and the clipdex index/status front ends'
# argument errors.
BUILD=${CLIPDEX_BUILD:-build}
D="$BUILD/bin/clipdexd"
C="$BUILD/bin/clipdex"
MODEL=build/testdata/models/tiny
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
T=$(mktemp -d /tmp/cdx-config-XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/photos"

"$D" --version | grep -q '^clipdexd [0-9]'; ok $? "--version"
"$D" -h | grep -q 'check-config'; ok $? "-h prints the usage"
"$D" --no-such-flag >/dev/null 2>&1; [ $? = 2 ]; ok $? "unknown flag: exit 2"

cat > "$T/good.conf" <<EOF
# a comment
[library]
root = photos
exclude = *.tmp
exclude = */cache/*
hidden = no
extensions = jpg, PNG .webp

[model]
dir = $PWD/$MODEL
batch = 4

[store]
data_dir = data
index_type = HNSW32,Flat

[limits]
max_file_size = 64M

[watch]
debounce_ms = 250
EOF
out=$("$D" --check-config -c "$T/good.conf" 2>"$T/err"); rc=$?
[ $rc = 0 ]; ok $? "--check-config accepts a good file"
[ $rc = 0 ] || sed 's/^/#   /' "$T/err"
echo "$out" | grep -qx "root = $T/photos"; ok $? "relative root taken against the file's directory"
echo "$out" | grep -qx "data_dir = $T/data"; ok $? "relative data_dir likewise"
echo "$out" | grep -qx "extensions = jpg png webp"; ok $? "extension list normalised (case, dots, commas)"
echo "$out" | grep -qx "max_file_size = 67108864"; ok $? "sizes take K/M/G suffixes"
echo "$out" | grep -qx "exclude = \*/cache/\*"; ok $? "repeated keys make a list"
echo "$out" | grep -qx "index_type = HNSW32,Flat"; ok $? "strings kept as written"

# Flags override the file; DIR arguments replace its roots.
mkdir -p "$T/other"
out=$("$D" --check-config -c "$T/good.conf" --batch 32 --set watch.debounce_ms=5 "$T/other" 2>/dev/null)
echo "$out" | grep -qx "batch = 32"; ok $? "--batch overrides [model] batch"
echo "$out" | grep -qx "debounce_ms = 5"; ok $? "--set SECTION.KEY=VALUE overrides"
echo "$out" | grep -qx "root = $T/other" && ! echo "$out" | grep -qx "root = $T/photos"
ok $? "DIR arguments replace the file's roots"

# Errors: file, line, section and key.
bad() {  # bad NAME EXPECTED-REGEX CONTENT (printf format)
    printf "$3" > "$T/$1.conf"
    err=$("$D" --check-config -c "$T/$1.conf" 2>&1 >/dev/null); rc=$?
    [ $rc = 2 ] && echo "$err" | grep -Eq "$2"
    ok $? "$1: exit 2 and '$2'"
    [ $rc = 2 ] && echo "$err" | grep -Eq "$2" || echo "# got ($rc): $err"
}
bad range "range.conf:3: \[model\] batch: 0 is out of range \(1\.\.256\)" '[model]\ndir = /m\nbatch = 0\n'
bad unknown-key "unknown-key.conf:4: unknown key 'bogus' in \[model\]" '[library]\nroot = /x\n[model]\nbogus = 1\n'
bad unknown-section "unknown-section.conf:2: unknown section \[nosuch\]" '[nosuch]\na = 1\n'
bad bool "bool.conf:2: \[library\] hidden: 'perhaps' is not yes or no" '[library]\nhidden = perhaps\n'
bad syntax "syntax.conf:3: syntax error" '[library]\nroot = /x\nthis line is junk\n'
bad level "level.conf:2: \[daemon\] log_level" '[daemon]\nlog_level = loud\n'
bad size "size.conf:2: \[limits\] max_file_size: '12Q' is not a size" '[limits]\nmax_file_size = 12Q\n'
"$D" --check-config -c "$T/nonexistent.conf" >/dev/null 2>&1; [ $? = 2 ]; ok $? "-c with a missing file: exit 2"
"$D" --check-config -c "$T/good.conf" --set model.batch=999 >/dev/null 2>"$T/err"; rc=$?
[ $rc = 2 ] && grep -q "model.batch: 999 is out of range" "$T/err"; ok $? "a bad --set value names the key"

# A very long line (a long path) is fine.
long=$(printf 'd%.0s' $(seq 1 3000))
printf '[library]\nroot = /tmp/%s\n[model]\ndir = %s\n' "$long" "$PWD/$MODEL" > "$T/long.conf"
"$D" --check-config -c "$T/long.conf" 2>/dev/null | grep -q "root = /tmp/$long"; ok $? "lines longer than inih's default limit"

# The default file: $XDG_CONFIG_HOME/clipdex/clipdex.conf.
mkdir -p "$T/xdg/clipdex"
printf '[library]\nroot = %s\n[model]\ndir = %s\nbatch = 7\n' "$T/photos" "$PWD/$MODEL" > "$T/xdg/clipdex/clipdex.conf"
XDG_CONFIG_HOME="$T/xdg" "$D" --check-config 2>/dev/null | grep -qx "batch = 7"; ok $? "reads \$XDG_CONFIG_HOME/clipdex/clipdex.conf"

# Nothing to do / no model: usage errors.
printf '[model]\ndir = %s\n' "$PWD/$MODEL" > "$T/noroot.conf"
"$D" --check-config -c "$T/noroot.conf" >/dev/null 2>&1; [ $? = 2 ]; ok $? "no root: --check-config fails"
"$D" --once -c "$T/noroot.conf" --data "$T/d0" >/dev/null 2>&1; [ $? = 2 ]; ok $? "no root: clipdexd exits 2"
env -u CLIPDEX_MODEL "$D" --once --data "$T/d0" -c /dev/null "$T/photos" >/dev/null 2>"$T/err"; rc=$?
[ $rc = 2 ] && grep -q "no model" "$T/err"; ok $? "no model: exit 2 with a hint"
"$D" --once --model "$MODEL" --data "$T/d0" -c /dev/null "$T/nonexistent" >/dev/null 2>&1; [ $? = 2 ]
ok $? "--once on a missing directory: exit 2"

# The front ends.
"$C" index >/dev/null 2>&1; [ $? = 2 ]; ok $? "clipdex index without DIR: exit 2"
"$C" index --bogus "$T" >/dev/null 2>&1; [ $? = 2 ]; ok $? "clipdex index --bogus: exit 2"
"$C" status --data "$T/nostore" >/dev/null 2>"$T/err"; rc=$?
[ $rc = 3 ] && grep -q "no index store" "$T/err"; ok $? "clipdex status without a store: exit 3 and says so"
"$C" status --format yaml --data "$T" >/dev/null 2>&1; [ $? = 2 ]; ok $? "clipdex status --format yaml: exit 2"
printf '[store]\ndata_dir = %s\n' "$T/fromconf" > "$T/st.conf"
"$C" status --config "$T/st.conf" 2>&1 | grep -q "$T/fromconf"; ok $? "clipdex status finds data_dir in the configuration"

echo "1..$n"
exit $fail
