#!/usr/bin/python3
"""query_fixture.py - the photo library and index store the query-tool
tests (tests/cli/60-*.t) run against, plus their TAP and clipdex helpers.

build(root) writes ROOT/lib/ (about 35 files) and indexes it into
ROOT/data with the tiny random model through `clipdex index`.  Capture
dates and cameras are written as EXIF (and the dates also as the files'
mtime); the tests expect what the fixture wrote, so a store that lost
the EXIF fails them.

    lib/20YY/sceneNN.jpg     12 distinct pictures, 2018..2021, cameras
                             "Canon EOS 5D" (even NN) and "Apple iPhone 12"
    lib/png/flatN.png        4 PNGs, 2015, no camera
    lib/copies/scene00-copy.jpg   the same bytes as lib/2018/scene00.jpg
    lib/dupes/PHOTO-*.jpg    transformed copies of corpus photos (resized,
                             recompressed, cropped, pixel- and EXIF-rotated)
    lib/bad/truncated.jpg    fails to decode (an error row)
"""
import calendar
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLIPDEX_BUILD", "build")
CLIPDEX = os.path.join(ROOT, BUILD, "bin", "clipdex")
MKSTORE = os.path.join(ROOT, BUILD, "tests", "tools", "mkstore")
TINY = os.path.join(ROOT, "build", "testdata", "models", "tiny")
SHARED = os.environ.get("CLIPDEX_SHARED", os.path.join(ROOT, "..", "shared"))
CORPUS = os.path.join(SHARED, "corpus")

# Real photos of the shared corpus used for the duplicate families.
CORPUS_PHOTOS = ["exif/ianare/jpg/exif-org/canon-ixus.jpg",
                 "exif/ianare/jpg/exif-org/nikon-e950.jpg",
                 "exif/ianare/jpg/gps/DSCN0010.jpg"]
TRANSFORMS = ["resize50", "q30", "crop2"]   # each grouped with its original


def ts(y, m=6, d=15, h=12):
    return calendar.timegm((y, m, d, h, 0, 0))


# ---------------------------------------------------------------- TAP

class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, msg, todo=None):
        self.n += 1
        if not cond and not todo:
            self.failed += 1
        print("%sok %d - %s%s" % ("" if cond else "not ", self.n, msg,
                                  " # TODO %s" % todo if todo else ""), flush=True)
        return cond

    def diag(self, msg):
        for line in str(msg).splitlines():
            print("# " + line, flush=True)

    def done(self):
        # A sanitizer report anywhere fails the script (under make
        # asan-check an error can hide behind an expected exit status 1).
        self.ok(not SAN_ERRORS, "no sanitizer reports (%d)" % len(SAN_ERRORS))
        for e in SAN_ERRORS[:3]:
            self.diag(e)
        print("1..%d" % self.n)
        return 1 if self.failed else 0


def clean_env():
    """The environment without the user's clipdex settings (a developer's
    clipdex.conf or CLIPDEX_* must not leak into the tests)."""
    e = dict(os.environ)
    for k in ("CLIPDEX_MODEL", "CLIPDEX_DATA", "CLIPDEX_DEBUG"):
        e.pop(k, None)
    e["XDG_CONFIG_HOME"] = os.path.join(ROOT, "build", "no-such-config-dir")
    return e


SAN_ERRORS = []
SAN_MARKS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:", b"SUMMARY: UndefinedBehavior")


def sanitizer_check(p, what):
    if any(m in p.stderr for m in SAN_MARKS):
        SAN_ERRORS.append("%s:\n%s" % (what, p.stderr.decode(errors="replace")[-3000:]))
    return p


def run(*args, env=None, data=None, model=TINY, stdin=None):
    """Run clipdex with --data/--model inserted after the subcommand."""
    cmd = [CLIPDEX, args[0]]
    if data:
        cmd += ["--data", data]
    if model:
        cmd += ["--model", model]
    cmd += list(args[1:])
    e = clean_env()
    if env:
        e.update(env)
    return sanitizer_check(subprocess.run(cmd, capture_output=True, env=e, input=stdin), " ".join(cmd))


def jsonl(p):
    return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]


# ---------------------------------------------------------------- images

def scene(w, h, seed):
    """A distinct photo-like picture per seed: smooth colour waves, noise,
    and a few sharp blocks (so pHashes of different seeds differ)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(0.5, 4, 2)
        ph = rng.uniform(0, 6.28)
        img[..., c] = 128 + 100 * np.sin(x / w * fx * 6.28 + ph) * np.cos(y / h * fy * 6.28 + ph / 2)
    for _ in range(4):
        x0, y0 = int(rng.uniform(0, w * 0.7)), int(rng.uniform(0, h * 0.7))
        img[y0:y0 + h // 4, x0:x0 + w // 4] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def exif(make=None, model=None, when=None, orientation=None):
    ex = Image.Exif()
    if make:
        ex[0x010F] = make
    if model:
        ex[0x0110] = model
    if orientation:
        ex[0x0112] = orientation
    if when is not None:
        ex[0x8769] = {0x9003: "%04d:%02d:%02d %02d:%02d:%02d" % __import__("time").gmtime(when)[:6]}
    return ex


def transformed(im, kind):
    """A copy of im (RGB, upright) as a JPEG byte string, and its EXIF
    orientation."""
    w, h = im.size
    orient = None
    if kind == "orig":
        out = im
    elif kind == "resize50":
        out = im.resize((w // 2, h // 2), Image.LANCZOS)
    elif kind == "resize25":
        out = im.resize((w // 4, h // 4), Image.LANCZOS)
    elif kind.startswith("q"):
        out = im
    elif kind.startswith("crop"):
        f = int(kind[4:]) / 100.0
        out = im.crop((int(w * f), int(h * f), w - int(w * f), h - int(h * f)))
    elif kind == "pixrot":          # pixels turned 90 degrees clockwise
        out = im.transpose(Image.ROTATE_270)
    elif kind == "exifrot":         # shown as pixrot: the original pixels + "rotate 90 CW" tag
        out = im
        orient = 6
    else:
        raise ValueError(kind)
    q = int(kind[1:]) if kind.startswith("q") else 90
    buf = io.BytesIO()
    kw = {"quality": q}
    if orient:
        kw["exif"] = exif(orientation=orient)
    out.save(buf, "JPEG", **kw)
    return buf.getvalue()


def corpus_photo(rel):
    p = os.path.join(CORPUS, rel)
    if not os.path.exists(p):
        return None
    im = Image.open(p)
    im = ImageOps.exif_transpose(im).convert("RGB")
    return im


# ---------------------------------------------------------------- the library

def write(path, data, when):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (when, when))


def make_library(lib):
    """Write the library; returns (manifest rows, facts dict)."""
    rows = []
    facts = {"scenes": [], "png": [], "families": [], "rot_pairs": [], "copy": None, "bad": None}
    for i in range(12):
        year = 2018 + i // 3
        when = ts(year, 1 + i % 12, 10 + i)
        make, model = ("Canon", "Canon EOS 5D") if i % 2 == 0 else ("Apple", "iPhone 12")
        im = scene(480 - 16 * i, 360 - 8 * i, 100 + i)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=88, exif=exif(make, model, when))
        p = os.path.join(lib, str(year), "scene%02d.jpg" % i)
        write(p, buf.getvalue(), when)
        rows.append((p, when, make, model))
        facts["scenes"].append({"path": p, "when": when, "make": make, "model": model, "year": year})
    for i in range(4):
        when = ts(2015, 3 + i)
        buf = io.BytesIO()
        scene(300, 200 + 10 * i, 300 + i).save(buf, "PNG")
        p = os.path.join(lib, "png", "flat%d.png" % i)
        write(p, buf.getvalue(), when)
        rows.append((p, when, "", ""))
        facts["png"].append(p)
    src = facts["scenes"][0]["path"]
    cp = os.path.join(lib, "copies", "scene00-copy.jpg")
    with open(src, "rb") as f:
        write(cp, f.read(), ts(2022))
    rows.append((cp, facts["scenes"][0]["when"], "Canon", "Canon EOS 5D"))
    facts["copy"] = cp
    # duplicate families from corpus photos; without the corpus, generated
    # stand-ins, which are not photo-like enough to survive cropping
    have_corpus = all(os.path.exists(os.path.join(CORPUS, rel)) for rel in CORPUS_PHOTOS)
    facts["transforms"] = TRANSFORMS if have_corpus else [t for t in TRANSFORMS if not t.startswith("crop")]
    for k, rel in enumerate(CORPUS_PHOTOS):
        im = corpus_photo(rel) if have_corpus else scene(640, 480, 500 + k)
        name = os.path.splitext(os.path.basename(rel))[0]
        when = ts(2016, 1 + k)
        fam = []
        for kind in ["orig"] + facts["transforms"]:
            p = os.path.join(lib, "dupes", "%s-%s.jpg" % (name, kind))
            write(p, transformed(im, kind), when + (0 if kind == "orig" else 86400))
            rows.append((p, None, "", ""))
            fam.append(p)
        facts["families"].append(fam)
        pair = []
        for kind in ("pixrot", "exifrot"):
            p = os.path.join(lib, "dupes", "%s-%s.jpg" % (name, kind))
            write(p, transformed(im, kind), when)
            rows.append((p, None, "", ""))
            pair.append(p)
        facts["rot_pairs"].append(pair)
    bad = os.path.join(lib, "bad", "truncated.jpg")
    with open(src, "rb") as f:
        write(bad, f.read()[:700], ts(2017))
    rows.append((bad, None, "", ""))
    facts["bad"] = bad
    return rows, facts


def index(lib, data, model=TINY, files=None):
    """Index lib into data with `clipdex index` (clipdexd --once: the
    indexer's own decode, EXIF, embed and pHash steps); with files, just
    those files through tests/tools/mkstore (the store API directly, for
    tests that add a file while a writer holds the store).  Returns the
    CompletedProcess."""
    if files is None:
        return sanitizer_check(subprocess.run([CLIPDEX, "index", "--data", data, "--model", model, lib],
                                              capture_output=True, env=clean_env()), "clipdex index")
    return sanitizer_check(subprocess.run([MKSTORE, "--data", data, "--model", model] + sorted(files),
                                          capture_output=True), "mkstore")


def build(root):
    """The library under root/lib, indexed into root/data by `clipdex
    index`: its capture dates, cameras and orientations are what the
    indexer read from the files' EXIF (66-index-metadata.t checks that
    against Pillow), never a manifest."""
    lib = os.path.realpath(os.path.join(root, "lib"))
    data = os.path.join(root, "data")
    rows, facts = make_library(lib)
    p = index(lib, data)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace"))
        raise SystemExit("fixture: indexing %s failed" % data)
    # what the fixture wrote, per path: capture time (EXIF, else the
    # mtime it set), camera make and model ("" for none)
    truth = {}
    for p, when, make, model in rows:
        truth[p] = {"when": when if when is not None else int(os.stat(p).st_mtime), "make": make, "model": model,
                    "ext": os.path.splitext(p)[1][1:].lower()}
    facts.update(lib=lib, data=data, n_files=len(rows), truth=truth)
    return facts


if __name__ == "__main__":
    # query_fixture.py LIBDIR: write the library only (scripts/demo.sh).
    if len(sys.argv) != 2:
        raise SystemExit("usage: query_fixture.py LIBDIR")
    shutil.rmtree(sys.argv[1], ignore_errors=True)
    rows, _ = make_library(os.path.realpath(sys.argv[1]))
    print(len(rows))
