#!/bin/sh
# run-image.sh BUILD - image decode + CLIP preprocessing time per image:
# clipdex's fast path (what the daemon indexes with: upright, DCT-scaled
# JPEG decode, cdx_preprocess_exact), its exact path (full decode,
# Pillow-exact bicubic) and Pillow itself (open + convert + resize + crop +
# normalise, as transformers' CLIPImageProcessor does), in the same run,
# single-threaded, median of 5 runs per file.
#
# Files: the shared corpus's photos (every JPEG, HEIF/AVIF or WebP image
# that decodes with a short side >= 448; other formats with such sizes,
# such as fax TIFFs and PNG test charts, are reported on their own line)
# plus four large photos made from corpus photos by bench/make_photos.py
# (12 and 24 MP; the corpus has few photos over 8 MP).  Prints the
# per-file table for photos over 8 MP and medians; the fast path should
# be >= 4x faster than Pillow on photos over 8 MP.
# Numbers only: never fails on a timing.
#
# Environment: PYTHON, CLIPDEX_SHARED (default ../shared) or
# CLIPDEX_CORPUS, BENCH_REPS (default 5).
set -eu
B=${1:-build}
PY=${PYTHON:-/usr/bin/python3}
CORPUS=${CLIPDEX_CORPUS:-${CLIPDEX_SHARED:-../shared}/corpus}
REPS=${BENCH_REPS:-5}
BIN=$B/bench/image_bench
if [ ! -x "$BIN" ]; then
    echo "run-image: $BIN is not built (make bench)"
    exit 0
fi
if [ ! -d "$CORPUS" ]; then
    echo "run-image: no corpus at $CORPUS (set CLIPDEX_SHARED)"
    exit 0
fi
OUT=$B/bench/image
mkdir -p "$OUT"
"$PY" bench/make_photos.py "$OUT/photos" "$CORPUS"

# clipdex first (it also selects the photos), then Pillow on the same list
find "$CORPUS" -type f ! -path '*/hostile/*' -print | sort >"$OUT/all.txt"
tr '\n' '\0' <"$OUT/all.txt" | xargs -0 "$BIN" -r "$REPS" -m 448 >"$OUT/clipdex.tsv"
"$BIN" -r "$REPS" "$OUT"/photos/*.jpg >>"$OUT/clipdex.tsv"
cut -f1 "$OUT/clipdex.tsv" | tr '\n' '\0' | xargs -0 "$PY" bench/image_pil.py -r "$REPS" >"$OUT/pillow.tsv"

"$PY" - "$OUT/clipdex.tsv" "$OUT/pillow.tsv" "$CORPUS" <<'PYEOF'
import statistics, sys, os
cdx = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
pil = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[2]))
corpus = os.path.abspath(sys.argv[3])
rows = []
other = []
for p, mp, fast, exact, psnr, dw, dh, fmt in cdx:
    if fast == "-":
        continue
    r = (p, float(mp), float(fast), float(exact), float(psnr),
         None if pil.get(p, "-") == "-" else float(pil[p]), dw + "x" + dh, fmt)
    (rows if fmt in ("jpeg", "heif", "avif", "webp") else other).append(r)
def name(p):
    a = os.path.abspath(p)
    return os.path.relpath(a, corpus) if a.startswith(corpus) else os.path.basename(p)
both = [r for r in rows if r[5] is not None]
big = [r for r in both if r[1] > 8]
print("%-44s %6s %10s %8s %8s %8s %7s %7s" % ("photo (> 8 MP)", "MP", "decoded", "fast", "exact",
                                                 "Pillow", "P/fast", "PSNR"))
for r in sorted(big, key=lambda r: r[1]):
    print("%-44.44s %6.1f %10s %6.1fms %6.1fms %6.1fms %6.1fx %5.1fdB" % (
        name(r[0]), r[1], r[6], r[2], r[3], r[5], r[5] / r[2], r[4]))
def summary(what, rs):
    if not rs:
        return
    f = statistics.median(r[2] for r in rs)
    e = statistics.median(r[3] for r in rs)
    pl = statistics.median(r[5] for r in rs)
    sp = statistics.median(r[5] / r[2] for r in rs)
    print("%-28s n=%-4d median ms: fast %7.2f  exact %7.2f  Pillow %7.2f | "
          "Pillow/fast: median %.1fx, min %.1fx | exact/fast %.1fx" % (
              what, len(rs), f, e, pl, sp, min(r[5] / r[2] for r in rs), e / f))
summary("all photos (short >= 448)", both)
summary("photos over 8 MP", big)
summary("photos up to 8 MP", [r for r in both if r[1] <= 8])
if big:
    ok = all(r[5] / r[2] >= 4 for r in big)
    print("fast path >= 4x faster than Pillow on every photo over 8 MP: %s" % ("yes" if ok else "NO"))
summary("other formats (PNG/TIFF/GIF)", [r for r in other if r[5] is not None])
print("fast vs exact PSNR (224x224 tensors): min %.1f dB over %d photos" % (
    min(r[4] for r in rows), len(rows)))
print("(not timed by Pillow: %d files it cannot open, e.g. HEIC)" % (len(rows) - len(both)))
PYEOF
