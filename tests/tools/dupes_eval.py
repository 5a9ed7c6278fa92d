#!/usr/bin/python3
"""dupes_eval.py - measure the visual-duplicate detector on real photos.

Takes the distinct real photos of the shared corpus (../shared/corpus,
or $CLIPDEX_SHARED/corpus), writes transformed copies of each with Pillow:

    resize50 resize25   downscaled (Lanczos), JPEG q90
    q50 q20             recompressed at that JPEG quality
    crop2 crop5 crop10  that percentage cut off every side
    pixrot / exifrot    turned 90 degrees clockwise in the pixels, and the
                        original pixels with EXIF Orientation 6 (which
                        displays the same): a pair that must match each
                        other once orientation is applied

hashes every file exactly as the index does (build/tests/tools/phash_files:
cdx_image_decode with orientation applied, cdx_phash), and prints for
Hamming thresholds 0..24 the pairwise precision and recall per transform:
a true pair is (original, copy) (for the rotation pair: (pixrot,
exifrot)); a false pair is a copy within the threshold of a file of
another photo.  Then it indexes everything with the tiny model and runs
`clipdex dupes --method visual` at the default threshold, reporting per
transform how many copies landed in their original's group and how many
groups mixed photos.

usage: dupes_eval.py [--keep DIR] [--thresholds 0-24]
"""
import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import query_fixture as qf  # noqa: E402

# Distinct real photos (camera pictures) from the corpus.  Left out: the
# byte-identical flower.jpg twin, a truncated file, a uniform grey and an
# all-black frame (no structure to hash: they match each other, rightly).
PHOTOS = """exif/gwenview/302350_exiv_0.23_exception.jpg exif/ianare/jpg/Canon_PowerShot_S40.jpg
exif/ianare/jpg/Reconyx_HC500_Hyperfire.jpg exif/ianare/jpg/exif-org/canon-ixus.jpg
exif/ianare/jpg/exif-org/fujifilm-dx10.jpg exif/ianare/jpg/exif-org/fujifilm-finepix40i.jpg
exif/ianare/jpg/exif-org/fujifilm-mx1700.jpg exif/ianare/jpg/exif-org/kodak-dc210.jpg
exif/ianare/jpg/exif-org/kodak-dc240.jpg exif/ianare/jpg/exif-org/nikon-e950.jpg
exif/ianare/jpg/exif-org/olympus-c960.jpg exif/ianare/jpg/exif-org/olympus-d320l.jpg
exif/ianare/jpg/exif-org/ricoh-rdc5300.jpg exif/ianare/jpg/exif-org/sanyo-vpcg250.jpg
exif/ianare/jpg/exif-org/sanyo-vpcsx550.jpg exif/ianare/jpg/exif-org/sony-cybershot.jpg
exif/ianare/jpg/exif-org/sony-d700.jpg exif/ianare/jpg/exif-org/sony-powershota5.jpg
exif/ianare/jpg/gps/DSCN0010.jpg exif/ianare/jpg/gps/DSCN0021.jpg exif/ianare/jpg/gps/DSCN0038.jpg
exif/ianare/jpg/mobile/jolla.jpg exif/ianare/jpg/orientation/landscape_1.jpg
exif/ianare/jpg/orientation/portrait_1.jpg exif/ianare/jpg/tests/11-tests.jpg
exif/ianare/jpg/tests/22-canon_tags.jpg exif/ianare/jpg/tests/30-type_error.jpg
exif/ianare/jpg/tests/33-type_error.jpg exif/ianare/jpg/tests/36-memory_error.jpg
exif/ianare/jpg/tests/87_OSError.jpg exif/jhead/normal-digicams/no-exif.jpg
exif/jhead/strange-jpegs/don.jpg exif/jhead/strange-jpegs/winxp-tags.jpg
exif/orientation/recurser/Landscape_0.jpg exif/orientation/recurser/Portrait_0.jpg
exif/pillow/exif-72dpi-int.jpg exif/pillow/exif_typeerror.jpg exif/pillow/iptc.jpg
jpeg/pillow/junk_jpeg_header.jpg""".split()

COPIES = ["resize50", "resize25", "q50", "q20", "crop2", "crop5", "crop10"]
ROT = ["pixrot", "exifrot"]


def popcount(x):
    return bin(x).count("1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="write the images here and keep them")
    ap.add_argument("--max-threshold", type=int, default=24)
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="cdx-dupes-eval-")
    lib = os.path.join(work, "lib")
    files = {}          # (photo index, kind) -> path
    for i, rel in enumerate(PHOTOS):
        im = qf.corpus_photo(rel)
        if im is None:
            print("dupes_eval: %s missing; is the corpus at %s?" % (rel, qf.CORPUS), file=sys.stderr)
            return 2
        for kind in ["orig"] + COPIES + ROT:
            p = os.path.join(lib, "p%02d-%s.jpg" % (i, kind))
            os.makedirs(lib, exist_ok=True)
            with open(p, "wb") as f:
                f.write(qf.transformed(im, kind))
            files[(i, kind)] = p
    tool = os.path.join(qf.ROOT, qf.BUILD, "tests", "tools", "phash_files")
    out = subprocess.run([tool] + list(files.values()), capture_output=True, check=True)
    h, orient = {}, {}
    for line in out.stdout.decode().splitlines():
        hx, o, p = line.split("\t", 2)
        h[p] = int(hx, 16)
        orient[p] = int(o)
    key = {p: k for k, p in files.items()}
    n = len(PHOTOS)
    exif_applied = all(orient[files[(i, "exifrot")]] == 6 for i in range(n))

    def dist(p, q):
        return popcount(h[p] ^ h[q])

    # true pairs per transform, and every cross-photo pair (the impostors)
    true = {k: [dist(files[(i, "orig")], files[(i, k)]) for i in range(n)] for k in COPIES}
    true["exifrot~pixrot"] = [dist(files[(i, "pixrot")], files[(i, "exifrot")]) for i in range(n)]
    paths = list(files.values())
    cross = []          # (distance, kind of a, kind of b)
    for p, q in itertools.combinations(paths, 2):
        if key[p][0] != key[q][0]:
            cross.append((dist(p, q), key[p][1], key[q][1]))
    originals = sorted(dist(files[(i, "orig")], files[(j, "orig")]) for i in range(n) for j in range(i + 1, n))

    print("%d photos, %d files; EXIF orientation applied by the decoder: %s" %
          (n, len(paths), "yes" if exif_applied else "NO (the bridge decoder ignores it)"))
    print("distance original->copy (min/median/max):")
    for k, v in true.items():
        v = sorted(v)
        print("  %-15s %2d / %2d / %2d" % (k, v[0], v[len(v) // 2], v[-1]))
    print("distance between different photos: min %d, 1st percentile %d, median %d (%d pairs of originals); "
          "min over all %d cross-photo file pairs: %d" %
          (originals[0], originals[len(originals) // 100], originals[len(originals) // 2], len(originals),
           len(cross), min(d for d, _, _ in cross)))
    cross_min = {}
    for d, ka, kb in cross:
        for k in (ka, kb):
            cross_min[k] = min(cross_min.get(k, 99), d)

    print("\npairwise recall / precision per transform at threshold t (bits):")
    kinds = COPIES + ["exifrot~pixrot"]
    print("  t  " + " ".join("%15s" % k for k in kinds) + "   false pairs")
    for t in range(0, a.max_threshold + 1):
        cells = []
        fp_all = sum(1 for d, _, _ in cross if d <= t)
        for k in kinds:
            tp = sum(1 for d in true[k] if d <= t)
            kk = "exifrot" if k == "exifrot~pixrot" else k
            fp = sum(1 for d, ka, kb in cross if d <= t and kk in (ka, kb))
            prec = tp / (tp + fp) if tp + fp else 1.0
            cells.append("%6.2f / %5.2f" % (tp / n, prec))
        print("  %2d " % t + " ".join("%15s" % c for c in cells) + "   %d" % fp_all)

    # group level, through the real command
    data = os.path.join(work, "data")
    shutil.rmtree(data, ignore_errors=True)
    p = subprocess.run([qf.MKSTORE, "--data", data, "--model", qf.TINY] + paths, capture_output=True)
    if p.returncode:
        print(p.stderr.decode(), file=sys.stderr)
        return 1
    r = qf.run("dupes", "--method", "visual", "--format", "json", data=data, model=None)
    groups = [[f["path"] for f in g["files"]] for g in qf.jsonl(r)]
    where = {}
    for gi, g in enumerate(groups):
        for pth in g:
            where[pth] = gi
    mixed = sum(1 for g in groups if len({key[x][0] for x in g}) > 1)
    print("\nclipdex dupes --method visual (default threshold): %d groups, %d mixing different photos" %
          (len(groups), mixed))
    for k in COPIES:
        hit = sum(1 for i in range(n) if where.get(files[(i, k)], -1) == where.get(files[(i, "orig")], -2))
        print("  %-15s %2d/%d copies grouped with their original" % (k, hit, n))
    hit = sum(1 for i in range(n) if where.get(files[(i, "exifrot")], -1) == where.get(files[(i, "pixrot")], -2))
    print("  %-15s %2d/%d exifrot grouped with pixrot" % ("rotation", hit, n))
    if not a.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
