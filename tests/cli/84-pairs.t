#!/usr/bin/python3
"""84-pairs.t - image-text pairs for `clipdex train` and `clipdex eval`
(query/pairs.c): TSV files, and directories whose images carry captions in
sidecars, embedded XMP or IPTC.

Oracle: the metadata is written by exiftool (an independent writer, not the
libraries clipdex reads it with) into copies of corpus JPEGs and generated
PNGs; the test knows every caption it wrote and the documented order of
sources (pairs.h), and tests/tools/pairs_dump prints what query/pairs.c
read.  Hostile inputs (a truncated XMP sidecar, a truncated embedded XMP
packet, invalid UTF-8, a binary .txt, empty captions, a broken link, an
unreadable file) must each give exactly one line naming the file, never a
crash.  Then `clipdex train` on a captioned directory must give weights
bit-identical to a run on the TSV listing the same pairs in the same
order, and `clipdex eval --pairs DIR` must count the same pairs.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
ROOT = qf.ROOT
DUMP = os.path.join(ROOT, qf.BUILD, "tests", "tools", "pairs_dump")
CORPUS_JPG = os.path.join(qf.CORPUS, "jpeg", "pillow", "hopper.jpg")
tmp = tempfile.mkdtemp(prefix="cdx-84-")
EXIFTOOL = shutil.which("exiftool")


def exiftool(path, *tags):
    p = subprocess.run([EXIFTOOL, "-q", "-q", "-overwrite_original", *tags, path], capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("exiftool %s: %s" % (path, p.stderr.decode()))


def dump(path, labels=False):
    cmd = [DUMP] + (["--labels"] if labels else []) + [path]
    p = qf.sanitizer_check(subprocess.run(cmd, capture_output=True), " ".join(cmd))
    pairs, skips, nocap = {}, [], None
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        f = line.split("\t")
        if f[0] == "pair":
            pairs[f[1]] = f[2]
        elif f[0] == "skip":
            skips.append(f[1])
        elif f[0] == "nocaption":
            nocap = int(f[1])
    return p, pairs, skips, nocap


def jpg(name):
    path = os.path.join(d, name)
    shutil.copy(CORPUS_JPG, path)
    os.chmod(path, 0o644)
    return path


def png(name, seed):
    path = os.path.join(d, name)
    qf.scene(48, 40, seed).save(path)
    return path


if not EXIFTOOL or not os.path.exists(DUMP):
    print("1..0 # SKIP exiftool or pairs_dump missing (make deps; make tests-build)")
    sys.exit(0)

# ---------------------------------------------------------------- sources and precedence

d = os.path.join(tmp, "lib")
os.makedirs(os.path.join(d, "sub", "deeper"))
want = {}      # path -> the caption the documented rules give
hostile = {}   # path -> a word the one line about it must contain

p = jpg("xmp-desc.jpg")
exiftool(p, "-XMP-dc:Description=a red bicycle by the river", "-XMP-dc:Subject=bike", "-XMP-dc:Subject=river")
want[p] = "a red bicycle by the river"
p = jpg("xmp-subject.jpg")
exiftool(p, "-XMP-dc:Subject=sunset", "-XMP-dc:Subject=beach", "-XMP-dc:Subject=palm tree")
want[p] = "sunset, beach, palm tree"
p = jpg("iptc-caption.jpg")
exiftool(p, "-codedcharacterset=utf8", "-IPTC:Caption-Abstract=un café près de la gare ☕")
want[p] = "un café près de la gare ☕"
p = jpg("iptc-keywords.jpg")
exiftool(p, "-codedcharacterset=utf8", "-IPTC:Keywords=mountain", "-IPTC:Keywords=snow")
want[p] = "mountain, snow"
p = jpg("xmp-over-iptc.jpg")
exiftool(p, "-codedcharacterset=utf8", "-IPTC:Caption-Abstract=the IPTC caption", "-XMP-dc:Description=the XMP caption")
want[p] = "the XMP caption"
p = png("xmp.png", 1)
exiftool(p, "-XMP-dc:Description=a PNG with  two  spaces\nand a line break")
want[p] = "a PNG with  two  spaces and a line break"
p = jpg("txt-first.jpg")
exiftool(p, "-XMP-dc:Description=not this one")
open(p + ".txt", "w").write("  caption from the sidecar \nsecond line is ignored\n")
want[p] = "caption from the sidecar"
p = png(os.path.join("sub", "stem.png"), 2)
open(os.path.join(d, "sub", "stem.txt"), "w", encoding="utf-8").write("\ufeffa stem sidecar with a BOM")
want[p] = "a stem sidecar with a BOM"
p = png(os.path.join("sub", "both.png"), 3)
open(p + ".txt", "w").write("IMG.EXT.txt wins")
open(os.path.join(d, "sub", "both.txt"), "w").write("over IMG.txt")
want[p] = "IMG.EXT.txt wins"
p = jpg(os.path.join("sub", "deeper", "side.jpg"))
exiftool(os.path.join(d, "sub", "deeper", "side.xmp"), "-XMP-dc:Description=from an XMP sidecar (Lightroom)")
exiftool(p, "-XMP-dc:Description=embedded, loses to the sidecar")
want[p] = "from an XMP sidecar (Lightroom)"
p = png(os.path.join("sub", "deeper", "dt.png"), 4)
exiftool(p + ".xmp", "-XMP-dc:Subject=darktable", "-XMP-dc:Subject=sidecar")
exiftool(os.path.join(d, "sub", "deeper", "dt.xmp"), "-XMP-dc:Description=the stem sidecar loses")
want[p] = "darktable, sidecar"
p = jpg("empty-txt-falls-through.jpg")
open(p + ".txt", "w").write("   \n")
exiftool(p, "-XMP-dc:Description=after an empty sidecar")
want[p] = "after an empty sidecar"
open(os.path.join(d, "notes.txt"), "w").write("not an image: ignored")
open(os.path.join(d, ".hidden.jpg"), "wb").write(b"hidden: ignored")

# hostile
p = jpg("trunc-sidecar.jpg")
exiftool(os.path.join(d, "trunc-sidecar.xmp"), "-XMP-dc:Description=cut in the middle")
x = open(os.path.join(d, "trunc-sidecar.xmp"), "rb").read()
open(os.path.join(d, "trunc-sidecar.xmp"), "wb").write(x[:len(x) // 2])
hostile[p] = "not valid XMP"
p = jpg("bad-utf8.jpg")
open(os.path.join(d, "bad-utf8.txt"), "wb").write(b"caf\xe9 au lait\n")
hostile[p] = "not UTF-8"
p = jpg("binary.jpg")
open(p + ".txt", "wb").write(bytes(range(256)) * 4)
hostile[p] = "binary"
p = jpg("iptc-latin1.jpg")
exiftool(p, "-charset", "iptc=Latin", "-IPTC:Caption-Abstract=café")   # Latin-1 bytes, no UTF-8 marker
hostile[p] = "not UTF-8"
p = png("nothing.png", 5)
hostile[p] = "no caption"
p = jpg("empty-everywhere.jpg")
open(p + ".txt", "w").write("\n")
hostile[p] = "no caption"
# an embedded XMP packet cut short: the APP1 segment ends inside the
# description (the packet's trailing padding would otherwise be all we cut)
p = jpg("trunc-embedded.jpg")
exiftool(p, "-XMP-dc:Description=an embedded packet that will be cut")
b = bytearray(open(p, "rb").read())
sig = b"http://ns.adobe.com/xap/1.0/\x00"
k = b.find(sig)
seg_len = struct.unpack(">H", b[k - 2:k])[0]
body_start, body_end = k + len(sig), k - 2 + seg_len
body = bytes(b[body_start:body_end])
cut = body[:body.find(b"packet that")]
b[k - 2:body_end] = struct.pack(">H", 2 + len(sig) + len(cut)) + sig + cut
open(p, "wb").write(bytes(b))
hostile[p] = "no caption"
os.symlink(os.path.join(d, "gone.jpg"), os.path.join(d, "broken-link.jpg"))
hostile[os.path.join(d, "broken-link.jpg")] = "broken"
unreadable = None
if os.geteuid() != 0:   # root reads anything: the case needs a normal user
    unreadable = jpg("unreadable.jpg")
    open(unreadable + ".txt", "w").write("a caption it never reaches")
    os.chmod(unreadable, 0)
    hostile[unreadable] = "ermission denied"

proc, got, skips, nocap = dump(d)
T.ok(proc.returncode == 0, "pairs_dump reads the directory")
for path, cap in sorted(want.items()):
    name = os.path.relpath(path, d)
    if not T.ok(got.get(path) == cap, "%s: %r" % (name, cap)):
        T.diag("got %r" % got.get(path))
T.ok(set(got) == set(want), "exactly the captioned images are pairs (%d)" % len(want))
for path, word in sorted(hostile.items()):
    lines = [s for s in skips if s.startswith(path + ":")]
    if not T.ok(len(lines) == 1 and word in lines[0], "%s: one line (%s)" % (os.path.relpath(path, d), word)):
        T.diag(lines)
T.ok(len(skips) == len(hostile), "one line per skipped image, nothing else (%d)" % len(skips))
if len(skips) != len(hostile):
    T.diag("\n".join(skips))
T.ok(nocap == 3, "caption-less images counted (%s)" % nocap)
T.ok(list(got) == sorted(got, key=lambda s: s.split("/")), "pairs in path order")

# ---------------------------------------------------------------- real files

# The shared corpus's JPEG/PNG/TIFF/WebP/HEIF files with metadata from
# cameras, Photoshop, exiv2's and exiftool's test suites: the caption must
# be what exiftool reads, by the same rules, except where the documented
# scope differs (listed, with the reason).
EXCEPT = {
    "exif/exiftool/XMP.jpg": "a UTF-16 XMP packet (packet scanning reads UTF-8 ones)",
    "exif/exiftool/ExifTool.jpg": "a UTF-16 XMP packet (the IPTC caption is used)",
    "exif/exiftool/AFCP.jpg": "IPTC in an AFCP trailer (libiptcdata reads APP13)",
    "exif/exiftool/FotoStation.jpg": "IPTC in a FotoStation trailer",
    "exif/exiv2/issue_1847_poc.jpg": "damaged IPTC: not UTF-8, skipped with a line",
    "formats/tiff/exiftool/ExifTool.tif": "IPTC in a TIFF (read in JPEGs only)",
}
exts = []
for e in "jpg jpeg jpe png webp heic heif avif tif tiff gif".split():
    exts += ["-ext", e]
agree, bad, n_pairs = 0, [], 0
for sub in ("exif", "formats"):
    root = os.path.join(qf.CORPUS, sub)
    proc, got, skips, _ = dump(root)
    n_pairs += len(got)
    ex = subprocess.run([EXIFTOOL, "-q", "-q", "-j", "-r", "-charset", "iptc=UTF8", "-XMP-dc:Description",
                         "-XMP-dc:Subject", "-IPTC:Caption-Abstract", "-IPTC:Keywords"] + exts + [root],
                        capture_output=True).stdout
    for e in json.loads(ex or b"[]"):
        want = None
        for k in ("Description", "Subject", "Caption-Abstract", "Keywords"):
            v = e.get(k)
            v = ", ".join(str(x).strip() for x in v if str(x).strip()) if isinstance(v, list) else \
                (None if v is None else str(v).replace("\t", " ").replace("\r", " ").replace("\n", " ").strip())
            if v:
                want = v
                break
        rel = os.path.relpath(e["SourceFile"], qf.CORPUS)
        if got.get(e["SourceFile"]) == want:
            agree += 1
        elif rel not in EXCEPT:
            bad.append("%s: exiftool %r, clipdex %r" % (rel, want, got.get(e["SourceFile"])))
T.ok(agree >= 500 and n_pairs >= 25 and not bad,
     "corpus: %d files read as exiftool reads them (%d captioned), %d documented exceptions"
     % (agree, n_pairs, len(EXCEPT)))
for b_ in bad[:10]:
    T.diag(b_)
p = subprocess.run([DUMP, qf.CORPUS], capture_output=True)
T.ok(p.returncode == 0 and not p.stderr and all(l.count(b"\t") >= 1 for l in p.stdout.splitlines()),
     "the whole corpus (hostile files and names included): no crash, nothing on stderr, one line per item")

# ---------------------------------------------------------------- TSV

tsv = os.path.join(tmp, "pairs.tsv")
with open(tsv, "wb") as f:
    f.write(b"lib/xmp.png\ta plain caption\n")
    f.write(b"\n")
    f.write(b"/abs/path.jpg\tabsolute paths stay\r\n")
    f.write(b"lib/a.jpg\tcaf\xe9\n")
    f.write(b"lib/b.jpg\t   \n")
    f.write(b"no tab here\n")
    f.write(b"lib/c.jpg\ta NUL \x00 inside\n")
    f.write(b"lib/d.jpg\tlast line without newline")
proc, got, skips, nocap = dump(tsv)
T.ok(got == {os.path.join(tmp, "lib/xmp.png"): "a plain caption", "/abs/path.jpg": "absolute paths stay",
             os.path.join(tmp, "lib/d.jpg"): "last line without newline"},
     "TSV: paths relative to the file, CR/LF and a final line without newline")
T.ok(len(skips) == 4 and all(s.startswith(tsv + ":") for s in skips)
     and any(":4:" in s and "UTF-8" in s for s in skips) and any(":5:" in s and "empty" in s for s in skips)
     and any(":6:" in s and "path<TAB>caption" in s for s in skips) and any(":7:" in s and "NUL" in s for s in skips),
     "TSV: invalid UTF-8, empty caption, no tab, NUL: one line each with FILE:LINE")
T.diag("\n".join(skips))
proc, _, _, _ = dump(os.path.join(tmp, "nope.tsv"))
T.ok(proc.returncode == 3 and b"nope.tsv" in proc.stdout, "missing PAIRS: an error naming it")

# ---------------------------------------------------------------- labelled folders

ld = os.path.join(tmp, "labelled")
for cls, n in (("golden_retriever", 2), ("tabby cat", 1)):
    os.makedirs(os.path.join(ld, cls, "nested"))
    for i in range(n):
        qf.scene(32, 32, 10 + i).save(os.path.join(ld, cls, "nested" if i else "", "%d.png" % i))
qf.scene(32, 32, 20).save(os.path.join(ld, "top.png"))
os.makedirs(os.path.join(ld, "empty"))
proc, got, skips, nocap = dump(ld, labels=True)
T.ok(got == {os.path.join(ld, "golden_retriever", "0.png"): "golden_retriever",
             os.path.join(ld, "golden_retriever", "nested", "1.png"): "golden_retriever",
             os.path.join(ld, "tabby cat", "0.png"): "tabby cat"},
     "labelled folder: the class is the sub-folder, at any depth below it")
T.ok(len(skips) == 1 and "top.png" in skips[0] and "class sub-folder" in skips[0],
     "an image outside any class folder: one line")

# ---------------------------------------------------------------- train and eval on a directory

td = os.path.join(tmp, "train")
os.makedirs(td)
rows = []
colours = ["red", "green", "blue", "yellow", "white", "black"]
for i, cn in enumerate(colours):
    path = os.path.join(td, "%d.png" % i)
    qf.scene(40, 40, 30 + i).save(path)
    if i % 3 == 0:
        open(path + ".txt", "w").write("a %s scene\n" % cn)
    elif i % 3 == 1:
        exiftool(path, "-XMP-dc:Description=a %s scene" % cn)
    else:
        exiftool(path, "-XMP-dc:Subject=%s" % cn, "-XMP-dc:Subject=scene")
    rows.append("%d.png\t%s" % (i, "a %s scene" % cn if i % 3 < 2 else "%s, scene" % cn))
qf.scene(40, 40, 99).save(os.path.join(td, "uncaptioned.png"))
with open(os.path.join(tmp, "train.tsv"), "w") as f:
    f.write("\n".join("train/" + r for r in rows) + "\n")
common = ["--order", "file", "--batch", "3", "--steps", "3", "--lr", "1e-3", "--seed", "1"]
pa = qf.run("train", "--data", td, "--out", os.path.join(tmp, "m-dir"), *common)
pb = qf.run("train", "--data", os.path.join(tmp, "train.tsv"), "--out", os.path.join(tmp, "m-tsv"), *common)
err = pa.stderr.decode()
T.ok(pa.returncode == 0 and "6 pairs (1 skipped)" in err and err.count("(skipped)") == 1
     and "uncaptioned.png: no caption" in err, "train --data DIR: 6 pairs, the caption-less image one line")
T.diag(err.strip())
same = pa.returncode == 0 and pb.returncode == 0 and \
    open(os.path.join(tmp, "m-dir", "model.safetensors"), "rb").read() == \
    open(os.path.join(tmp, "m-tsv", "model.safetensors"), "rb").read()
T.ok(same, "train on the directory == train on the TSV of the same pairs (bit-identical weights)")
pe = qf.run("eval", "--pairs", td, "--format", "json", "--precision", "f32")
r = json.loads(pe.stdout) if pe.returncode == 0 else {}
rr = r.get("retrieval", {})
T.ok(rr.get("pairs") == 6 and rr.get("images") == 6 and rr.get("captions") == 6 and rr.get("no_caption") == 1,
     "eval --pairs DIR: the same 6 pairs, 1 without a caption")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
