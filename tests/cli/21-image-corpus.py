#!/usr/bin/env python3
"""21-image-corpus.py - every file of the shared corpus through the image
ingestion layer (cdx_image_decode), checked against the corpus's
MANIFEST.tsv and against Pillow.  Run by 21-image-corpus.t; prints TAP.

What is checked:
  1. The driver (tests/fuzz/imgcheck.c) decodes every file of the corpus
     (plus a FIFO, a directory and a missing file made here) and prints
     nothing itself: stdout and stderr stay empty, so no decoder library
     wrote anything.
  2. Per file, one TAP line:
       - a failure is exactly one line "PATH: reason";
       - files the MANIFEST says must fail (corrupt PngSuite x*, image-png
         x_*, "must fail cleanly", ...) fail, hostile files with the
         precise reason listed below;
       - WebP, GIF and TIFF files decode to the same RGB as Pillow's
         convert("RGB") (first frame / page), and where Pillow refuses a
         file we may refuse it too (JPEG and PNG are compared byte for byte
         by 20-preprocess.t through the same decoders);
       - HEIF/AVIF files that libheif's own tool parses with a real size
         decode to that size;
       - EXIF orientation, DateTimeOriginal and camera recorded in the
         MANIFEST notes match what we read.
  3. The metadata-only probe agrees with the full decode; decoding on two
     threads gives the same records as on one; the fast path (DCT-scaled,
     upright) decodes exactly the files the stored path decodes.
  4. Orientation: each EXIF orientation sample (recurser Landscape/Portrait
     0..8, ianare landscape/portrait 1..8, Pillow hopper 2..8 as JPEG and
     WebP) decoded upright is (a) exactly Pillow's exif_transpose of the
     stored pixels and (b) closer to the unrotated ground-truth image than
     any other of the 8 orientations would be.

Deliberate differences from Pillow are listed in KNOWN with the reason.
"""
import argparse
import os
import re
import stat
import subprocess
import sys
import tempfile
import warnings
from datetime import datetime, timezone

import numpy as np
from PIL import Image

warnings.simplefilter("ignore")
Image.MAX_IMAGE_PIXELS = None

# (kind, corpus path) -> why.  kind: "refuse" = we refuse what Pillow
# decodes; "pixels" = decoded pixels may differ from Pillow by at most
# the given amount; "meta" = the MANIFEST note is not what the file says.
KNOWN = {
    ("refuse", "formats/gif/gdk-pixbuf/gif-test-suite/max-codes.gif"):
        "giflib stops when the LZW table fills up without a clear code; Pillow goes on",
    ("pixels", "formats/tiff/go-x-image/video-001-gray-16bit.tiff"):
        (1, "16-bit grey: libtiff rounds to 8 bits, Pillow clips (compared with the high byte)"),
    ("pixels", "formats/tiff/libtiff/minisblack-1c-16b.tiff"):
        (1, "16-bit grey: libtiff rounds to 8 bits, Pillow clips (compared with the high byte)"),
    ("meta", "exif/ianare/jpg/Panasonic_DMC-FZ30.jpg"):
        "the note's orientation=8 is the thumbnail's (IFD1); IFD0 says 1, as Pillow reads it",
    ("meta", "exif/pillow/exif_gps.jpg"):
        "libexif stops reading IFD0 at its corrupt entry (so no EXIF IFD, no date; a warning "
        "says so); Pillow skips only that entry",
}

# Hostile and special files: the reason the failure must give.
def expected_reason(rel, full):
    b = os.path.basename(rel)
    if rel.startswith("hostile/truncated/trunc_jpeg"):
        return "truncated JPEG data"
    if rel.startswith("hostile/truncated/trunc_png"):
        return "truncated PNG data"
    table = {
        "hostile/empty/empty.jpg": "empty file",
        "hostile/wrong-content/plain_text.jpg": "not a supported image file",
        "hostile/bad-crc/ihdr_crc_inverted.png": "PNG CRC error in IHDR",
        "hostile/huge-dimensions/png_100000x100000_rgb8.png":
            "image is 100000x100000 (10000.0 megapixels), over the 200.0 megapixel limit",
        "hostile/huge-dimensions/jpeg_65535x65535.jpg": "Maximum supported image dimension",
        "jpeg/gdk-pixbuf/large.jpg": "image is 22500x33300",
        "formats/gif/gdk-pixbuf/bug785973.gif": "image is 65308x65386",
        "jpeg/libjpeg-turbo/testorig12.jpg": "unsupported: 12-bit JPEG",
        "png/pngsuite/xcsn0g01.png": "PNG CRC error in IDAT",
        "png/pngsuite/xhdn0g08.png": "PNG CRC error in IHDR",
        "@fifo": "not a regular file",
        "@dir": "not a regular file",
        "@missing": "No such file or directory",
    }
    if rel in table:
        return table[rel]
    if rel.startswith("hostile/symlink-loop/") and os.path.islink(full):
        return "Too many levels of symbolic links"  # (a checkout may store them as text)
    if re.match(r"png/pngsuite/xs..n.c..\.png$", rel) or b in ("xcrn0g04.png", "xlfn0g04.png"):
        return "not a supported image file"
    if rel.startswith("jpeg/jpeg-decoder/reftest/lossless/") and b.endswith(".jpg"):
        return "unsupported: lossless JPEG"
    return None


def must_fail(rel, note):
    if re.search(r"must fail cleanly|must reject|rejected without crash|fails with ELOOP", note):
        return True
    if "x_ prefix" in note:
        return os.path.basename(rel).startswith("x_")
    return False


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, desc):
        self.n += 1
        desc = desc.replace("\n", "?")
        print("%sok %d - %s" % ("" if cond else "not ", self.n, desc))
        if not cond:
            self.failed += 1
        return cond

    def diag(self, msg):
        for line in str(msg).splitlines():
            print("# " + line)

    def done(self):
        print("1..%d" % self.n)
        return 1 if self.failed else 0


def unescape_manifest_path(p):
    out = bytearray()
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\" and i + 1 < len(p):
            n = p[i + 1]
            if n in "\\tnr":
                out += {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}[n]
                i += 2
                continue
            if n == "x":
                out.append(int(p[i + 2:i + 4], 16))
                i += 4
                continue
        out += c.encode()
        i += 1
    return os.fsdecode(bytes(out))


def read_manifest(corpus):
    notes = {}
    with open(os.path.join(corpus, "MANIFEST.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 4:
                notes[unescape_manifest_path(cols[0])] = cols[3]
    return notes


def walk(corpus):
    """Relative paths of every file and symlink (dir symlinks not followed)."""
    out = []
    for root, dirs, files in os.walk(corpus):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            if os.path.islink(full) and os.path.isdir(full):
                continue  # the self-referencing directory link
            out.append(os.path.relpath(full, corpus))
    return sorted(out)


def unesc_field(s):
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "\\": "\\"}.get(m.group(1), m.group(1)), s)


def run_imgcheck(binary, mode, paths, tmp, tag, threads=1, dump=None):
    lst = os.path.join(tmp, tag + ".list")
    with open(lst, "wb") as f:
        for p in paths:
            f.write(os.fsencode(p) + b"\0")
    out = os.path.join(tmp, tag + ".out")
    cmd = [binary, "-m", mode, "-j", str(threads), "-o", out, "-L", lst]
    if dump:
        os.makedirs(dump, exist_ok=True)
        cmd[1:1] = ["-d", dump]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    recs = {}
    raw = b""
    if os.path.exists(out):
        raw = open(out, "rb").read()
        for line in raw.split(b"\n"):
            if not line or line.startswith(b"#"):
                continue
            f = line.decode("utf-8", "surrogateescape").split("\t")
            recs[int(f[0])] = {
                "ok": f[1] == "ok", "format": f[2], "w": int(f[3]), "h": int(f[4]),
                "iw": int(f[5]), "ih": int(f[6]), "orient": int(f[7]),
                "taken": None if f[8] == "-" else int(f[8]),
                "tz": None if f[9] == "-" else int(f[9]),
                "make": unesc_field(f[10]), "model": unesc_field(f[11]),
                "gps": f[12], "msg": unesc_field(f[13]),
                "line": "\t".join(f[1:]),
            }
    return r, recs, raw


def pillow_rgb(path):
    """Pillow's convert("RGB") of the first frame/page, with 16-bit grey
    taken as its high byte (as clipdex does) instead of clipped.  Pillow's
    libtiff prints warnings on fd 2: silenced (they are not ours)."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        return pillow_rgb_(path)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def pillow_rgb_(path):
    with Image.open(path) as im:
        fmt = im.format
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            a = (np.asarray(im).astype(np.int64) >> 8).astype(np.uint8)
            return fmt, np.repeat(a[:, :, None], 3, axis=2)
        return fmt, np.asarray(im.convert("RGB"))


def load_dump(dump, i, rec):
    a = np.fromfile(os.path.join(dump, "%d.rgb" % i), dtype=np.uint8)
    return a.reshape(rec["ih"], rec["iw"], 3)


EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orient_np(a, o):
    if o == 1:
        return a
    return np.asarray(Image.fromarray(a).transpose(EXIF_TRANSPOSE[o]))


def check_meta(rel, note, rec, problems):
    """EXIF orientation / DateTimeOriginal / camera in the note vs ours."""
    if ("meta", rel) in KNOWN:
        return
    m = re.search(r"EXIF orientation=(\w+)", note)
    if m:
        want = int(m.group(1)) if m.group(1).isdigit() else 1
        if not 1 <= want <= 8:
            want = 1
        if rec["orient"] != want:
            problems.append("orientation %d, MANIFEST says %s" % (rec["orient"], m.group(1)))
    m = re.search(r"DateTimeOriginal=(\d{4}:\d\d:\d\d \d\d:\d\d:\d\d)", note)
    if m:
        if rec["taken"] is None:
            problems.append("no date, MANIFEST says %s" % m.group(1))
        else:
            local = rec["taken"] + (rec["tz"] or 0) * 60
            got = datetime.fromtimestamp(local, timezone.utc).strftime("%Y:%m:%d %H:%M:%S")
            if got != m.group(1):
                problems.append("date %s, MANIFEST says %s" % (got, m.group(1)))
    m = re.search(r"camera=(.*?)(?:, GPS IFD|, MakerNote|, IFD loop|;|$)", note)
    if m:
        want = m.group(1).split("\\x00")[0].strip()
        got = (rec["make"] + " " + rec["model"]).strip()
        # the note is cut at the first ", " of a make like "Minolta Co., Ltd."
        if not got.startswith(want):
            problems.append("camera %r, MANIFEST says %r" % (got, want))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--imgcheck", required=True)
    a = ap.parse_args()
    tap = Tap()
    corpus = os.path.abspath(a.corpus)
    notes = read_manifest(corpus)
    rels = walk(corpus)

    tmp = tempfile.mkdtemp(prefix="cdx-corpus-")
    try:
        # special files, made here (a FIFO cannot be stored in git)
        os.mkfifo(os.path.join(tmp, "pipe.jpg"))
        os.mkdir(os.path.join(tmp, "adir.jpg"))
        specials = {"@fifo": os.path.join(tmp, "pipe.jpg"), "@dir": os.path.join(tmp, "adir.jpg"),
                    "@missing": os.path.join(tmp, "missing.jpg")}
        names = rels + list(specials)
        paths = [os.path.join(corpus, r) for r in rels] + list(specials.values())

        r, stored, raw = run_imgcheck(a.imgcheck, "stored", paths, tmp, "stored")
        tap.ok(r.returncode == 0 and len(stored) == len(paths),
               "imgcheck decoded %d files (exit %d, %d records)" % (len(paths), r.returncode, len(stored)))
        tap.ok(r.stdout == b"" and r.stderr == b"",
               "no library wrote to stdout or stderr (%d + %d bytes)" % (len(r.stdout), len(r.stderr)))
        if r.stdout or r.stderr:
            tap.diag((r.stdout + r.stderr)[:2000].decode("utf-8", "replace"))

        in_manifest = sum(1 for n in rels if n in notes)
        tap.ok(in_manifest >= len(notes) - 1,  # the FIFO is listed but not stored
               "%d of %d MANIFEST entries are in the tree" % (in_manifest, len(notes)))

        # Pixels are written out only for what is compared here: WebP, GIF,
        # TIFF (with Pillow) and the orientation references.
        dump = os.path.join(tmp, "stored")
        want = [i for i, rel in enumerate(rels) if stored.get(i, {}).get("ok") and
                (stored[i]["format"] in ("webp", "gif", "tiff") or rel.startswith("exif/orientation/")
                 or rel.startswith("exif/ianare/jpg/orientation/") or rel == "jpeg/pillow/hopper.jpg")]
        r2, sub, _ = run_imgcheck(a.imgcheck, "stored", [paths[i] for i in want], tmp, "subset", dump=dump)
        for k, i in enumerate(want):
            if k in sub and sub[k]["line"] == stored[i]["line"]:
                os.rename(os.path.join(dump, "%d.rgb" % k), os.path.join(dump, "x%d.rgb" % i))
        for i in want:
            if os.path.exists(os.path.join(dump, "x%d.rgb" % i)):
                os.rename(os.path.join(dump, "x%d.rgb" % i), os.path.join(dump, "%d.rgb" % i))
        tap.ok(r2.returncode == 0 and len(sub) == len(want),
               "pixels of %d WebP/GIF/TIFF and orientation files written for comparison" % len(want))

        counts = {"ok": 0, "fail": 0, "pillow": 0, "heif": 0, "meta": 0, "known": 0}
        for i, rel in enumerate(names):
            rec = stored.get(i)
            note = notes.get(rel, "")
            label = rel if not rel.startswith("@") else rel + " (" + os.path.basename(specials[rel]) + ")"
            if rec is None:
                tap.ok(False, "%s: no record" % label)
                continue
            problems = []
            info = []
            counts["ok" if rec["ok"] else "fail"] += 1
            if not rec["ok"]:
                info.append("refused: " + rec["msg"])
                if rec["msg"].startswith("BADMSG"):
                    problems.append("error is not one line 'PATH: reason'")
            want_reason = expected_reason(rel, os.path.join(corpus, rel))
            if want_reason and (rec["ok"] or want_reason not in rec["msg"]):
                problems.append("expected failure '%s'" % want_reason)
            if must_fail(rel, note) and rec["ok"]:
                problems.append("MANIFEST says it must fail, but it decoded")

            full = os.path.join(corpus, rel)
            ext = rel.rsplit(".", 1)[-1].lower() if "." in os.path.basename(rel) else ""
            if not rel.startswith("@") and (rec["format"] in ("webp", "gif", "tiff") or
                                             ext in ("webp", "gif", "tif", "tiff")):
                try:
                    fmt, ref = pillow_rgb(full)
                except Exception as e:  # Pillow refuses: we may too
                    fmt, ref = None, None
                    info.append("Pillow refuses (%s)" % str(e).splitlines()[0][:60] if str(e) else "Pillow refuses")
                if fmt in ("WEBP", "GIF", "TIFF"):
                    counts["pillow"] += 1
                    if not rec["ok"]:
                        if ("refuse", rel) in KNOWN:
                            counts["known"] += 1
                            info.append("known: " + KNOWN[("refuse", rel)])
                        else:
                            problems.append("Pillow decodes it")
                    else:
                        got = load_dump(dump, i, rec)
                        if got.shape != ref.shape:
                            problems.append("size %s, Pillow %s" % (got.shape, ref.shape))
                        else:
                            d = int(np.abs(got.astype(int) - ref.astype(int)).max())
                            tol, why = KNOWN.get(("pixels", rel), (0, ""))
                            if d > tol:
                                problems.append("pixels differ from Pillow by up to %d" % d)
                            else:
                                info.append("same pixels as Pillow" + (" (+-%d: %s)" % (tol, why) if tol else ""))
            if rec["ok"] and rec["format"] in ("heif", "avif"):
                counts["heif"] += 1
            m = re.search(r"(\d+)x(\d+); 1 top-level image\(s\); libheif 1.15 heif-info parses it", note)
            if m and int(m.group(1)) > 0 and not re.search(r"fuzz|no real image data", note):
                if not rec["ok"]:
                    problems.append("libheif's heif-info parses it, we refuse")
                elif (rec["w"], rec["h"]) != (int(m.group(1)), int(m.group(2))):
                    problems.append("size %dx%d, heif-info says %sx%s" % (rec["w"], rec["h"], m.group(1), m.group(2)))
            if rec["ok"] and re.search(r"EXIF orientation=|DateTimeOriginal=|camera=", note):
                counts["meta"] += 1
                check_meta(rel, note, rec, problems)
            if rec["ok"]:
                info.insert(0, "%s %dx%d" % (rec["format"], rec["w"], rec["h"]))
                if rec["msg"]:
                    info.append("warning: " + rec["msg"])
            if problems:
                tap.ok(False, "%s: %s [%s]" % (label, "; ".join(problems), "; ".join(info)))
            else:
                tap.ok(True, "%s: %s" % (label, "; ".join(info)))
        tap.diag("decoded %(ok)d, refused %(fail)d; %(pillow)d WebP/GIF/TIFF compared with "
                 "Pillow (%(known)d known differences); %(heif)d HEIF/AVIF decoded; "
                 "EXIF of %(meta)d files checked against the MANIFEST" % counts)

        # ---- 3. probe, threads, fast path ----
        r, probe, _ = run_imgcheck(a.imgcheck, "probe", paths, tmp, "probe")
        bad = []
        for i, rec in stored.items():
            p = probe.get(i)
            if rec["ok"] and (p is None or not p["ok"] or any(
                    p[k] != rec[k] for k in ("format", "w", "h", "orient", "taken", "make", "model", "gps"))):
                bad.append(names[i])
        tap.ok(r.returncode == 0 and not r.stdout and not r.stderr and not bad,
               "metadata-only probe agrees with the full decode on all %d decodable files" % counts["ok"])
        for b in bad[:10]:
            tap.diag("probe differs: " + b)

        r, threaded, _ = run_imgcheck(a.imgcheck, "stored", paths, tmp, "threads", threads=2)
        diff = [names[i] for i in stored if threaded.get(i, {}).get("line") != stored[i]["line"]]
        tap.ok(r.returncode == 0 and not r.stdout and not r.stderr and not diff,
               "decoding on 2 threads gives the same %d records" % len(stored))
        for b in diff[:10]:
            tap.diag("differs on threads: " + b)

        r, fast, _ = run_imgcheck(a.imgcheck, "fast", paths, tmp, "fast")
        diff = [names[i] for i in stored if fast.get(i, {}).get("ok") != stored[i]["ok"]]
        small = [names[i] for i, f in fast.items() if f["ok"] and min(f["iw"], f["ih"]) < 224
                 and min(stored[i]["w"], stored[i]["h"]) >= 224]
        tap.ok(r.returncode == 0 and not r.stdout and not r.stderr and not diff and not small,
               "fast path (DCT-scaled, upright) decodes the same files, never below 224 pixels")
        for b in (diff + small)[:10]:
            tap.diag("fast path differs: " + b)

        # ---- 4. orientation ----
        samples = []  # (sample rel, orientation, reference rel)
        for kind in ("Landscape", "Portrait"):
            for o in range(0, 9):
                samples.append(("exif/orientation/recurser/%s_%d.jpg" % (kind, o), max(o, 1),
                                "exif/orientation/recurser/%s_1.jpg" % kind))
            for o in range(1, 9):
                samples.append(("exif/ianare/jpg/orientation/%s_%d.jpg" % (kind.lower(), o), o,
                                "exif/ianare/jpg/orientation/%s_1.jpg" % kind.lower()))
        for o in range(2, 9):
            for ext in ("jpg", "webp"):
                samples.append(("exif/orientation/pillow/hopper_orientation_%d.%s" % (o, ext), o,
                                "jpeg/pillow/hopper.jpg"))
        samples = [s for s in samples if os.path.exists(os.path.join(corpus, s[0]))]
        up_dump = os.path.join(tmp, "upright")
        up_paths = [os.path.join(corpus, s[0]) for s in samples]
        r, upright, _ = run_imgcheck(a.imgcheck, "upright", up_paths, tmp, "upright", dump=up_dump)
        tap.ok(r.returncode == 0 and not r.stdout and not r.stderr and len(upright) == len(samples),
               "upright decode of %d orientation samples" % len(samples))
        for k, (rel, o, ref_rel) in enumerate(samples):
            i = names.index(rel)
            j = names.index(ref_rel)
            rec, srec, rrec = upright.get(k), stored.get(i), stored.get(j)
            if not (rec and rec["ok"] and srec["ok"] and rrec["ok"]):
                tap.ok(False, "upright %s: not decoded" % rel)
                continue
            got = load_dump(up_dump, k, rec)
            raw_px = load_dump(dump, i, srec)
            ref = load_dump(dump, j, rrec)
            exact = np.array_equal(got, orient_np(raw_px, o))
            errs = {}
            for cand in range(1, 9):
                c = orient_np(raw_px, cand)
                if c.shape == ref.shape:
                    errs[cand] = float(np.abs(c.astype(float) - ref.astype(float)).mean())
            best = min(errs, key=errs.get) if errs else None
            others = [v for kk, v in errs.items() if kk != o]
            tap.ok(rec["orient"] == o and exact and best == o,
                   "upright %s: orientation %d%s; %s exif_transpose; closest to %s "
                   "(mean abs diff %.2f, next best %.2f)" % (
                       rel, rec["orient"], "" if rec["orient"] == o else " (want %d)" % o,
                       "equals" if exact else "DIFFERS FROM", os.path.basename(ref_rel),
                       errs.get(o, -1), min(others) if others else -1))
        # Orientation 9 is ignored with a warning, never used as an index.
        rel = "hostile/exif/exif_orientation_9.jpg"
        if rel in names:
            rec = stored[names.index(rel)]
            tap.ok(rec["ok"] and rec["orient"] == 1 and "invalid EXIF Orientation 9" in rec["msg"],
                   "%s: orientation 1 with warning '%s'" % (rel, rec["msg"]))
    finally:
        subprocess.run(["rm", "-rf", tmp])
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
