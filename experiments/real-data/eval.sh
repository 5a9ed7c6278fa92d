#!/bin/sh
# eval.sh OUT MODEL NAME - the held-out figures of the real-data experiment
# (README.md) for one model, as JSON under OUT/runs/eval-NAME-*.json.
#   -oc          zero-shot on held-out openclipart (folder categories, prompt "{}")
#                and retrieval on held-out openclipart+openmoji pairs
#   -om          zero-shot on held-out openmoji (groups, prompt "{}")
#   -oc-default  zero-shot on held-out openclipart with eval's default templates
#   -tux         zero-shot on held-out Tux Paint stamps (folders, "{}") and
#                retrieval on the held-out Tux Paint pairs (out of domain)
set -eu
[ $# -eq 3 ] || { echo "usage: $0 OUT MODEL NAME" >&2; exit 2; }
OUT=$1; M=$2; N=$3
CLIPDEX=${CLIPDEX:-clipdex}
mkdir -p "$OUT/runs"
cd "$OUT"
$CLIPDEX eval --model "$M" --classes zs-openclipart.tsv --template "{}" --pairs heldout.tsv --format json > "runs/eval-$N-oc.json"
$CLIPDEX eval --model "$M" --classes zs-openmoji.tsv --template "{}" --format json > "runs/eval-$N-om.json"
$CLIPDEX eval --model "$M" --classes zs-openclipart.tsv --format json > "runs/eval-$N-oc-default.json"
$CLIPDEX eval --model "$M" --classes zs-tux.tsv --template "{}" --pairs tux-heldout.tsv --format json > "runs/eval-$N-tux.json"
