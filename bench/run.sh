#!/bin/sh
# bench/run.sh BUILD - run every bench/run-*.sh in turn.  Benchmarks print
# numbers (medians and ratios against a baseline run in the same
# invocation); they never fail on a timing.
set -eu
BUILD=${1:-build}
export BUILD
export PYTHON=${PYTHON:-/usr/bin/python3}
for b in "$(dirname "$0")"/run-*.sh; do
    echo "== $(basename "$b")"
    sh "$b" "$BUILD"
done
