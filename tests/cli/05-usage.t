#!/bin/sh
# 05-usage.t - every subcommand: `-h` and `help CMD` print its usage and exit
# 0, an unknown option is a usage error (exit 2), and the man page section's
# synopsis is identical to the usage string.
BUILD=${CLIPDEX_BUILD:-build}
C="$BUILD/bin/clipdex"
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

cmds=$("$C" help | awk '/^commands:/ {f = 1; next} f && !NF {exit} f {print $1}')
[ -n "$cmds" ]; ok $? "clipdex help lists commands"
"$C" >/dev/null 2>&1; [ $? = 2 ]; ok $? "no command: exit 2"
"$C" nosuchcmd >/dev/null 2>&1; [ $? = 2 ]; ok $? "unknown command: exit 2"
"$C" --version | grep -q '^clipdex [0-9]'; ok $? "--version"

# Man page synopses: the .nf line after each ".SS NAME", with \- unescaped.
for c in $cmds; do
    usage=$("$C" help "$c" | sed -n 's/^usage: //p')
    h=$("$C" "$c" -h | sed -n 's/^usage: //p')
    [ -n "$usage" ] && [ "$usage" = "$h" ]; ok $? "$c: -h and help agree"
    man=$(awk -v c="$c" '$1 == ".SS" && $2 == c {f = 1; next} f && /^\.nf/ {g = 1; next} g {print; exit}' man/clipdex.1 | sed 's/\\-/-/g')
    [ "$man" = "$usage" ]; ok $? "$c: man page synopsis matches usage"
    [ "$man" = "$usage" ] || { echo "# man:   $man"; echo "# usage: $usage"; }
    if [ "$c" != help ]; then
        "$C" "$c" --no-such-option >/dev/null 2>&1; [ $? = 2 ]; ok $? "$c: unknown option is exit 2"
    fi
done
echo "1..$n"
exit $fail
