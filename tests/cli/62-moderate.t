#!/usr/bin/python3
"""62-moderate.t - `clipdex moderate` end to end with a label file on the
generated library (tests/tools/query_fixture.py) and the tiny model.

The probabilities must be exactly the zero-shot classifier of the CLIP
paper, computed here by the independent PyTorch reference
(tests/ref/clip_ref.py) from the checkpoint itself: a label's embedding
is its prompts' normalised reference embeddings summed and renormalised;
the image side is the vector the index holds for the file (read from
clipdex.db, float16 as stored; 65-index-vectors.t checks those against
the engine); the
scale is exp(logit_scale) read from the weights.  softmax(scale *
<label, image>) over the labels must equal moderate's scores.  Nothing
in the expected values comes from clipdex's output.  Also: thresholds, stored results and --new, presets
and the background set, formats, filters, label file errors.
"""
import html.parser
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
import query_fixture as qf  # noqa: E402
import clip_ref  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-62-")
F = qf.build(tmp)
D = F["data"]

LABELS = [("a red car", True, 0.0, ["a photo of a red car", "a red automobile"]),
          ("a bicycle", True, 0.3, ["a photo of a bicycle", "a bike leaning on a wall", "cycling"]),
          ("a sunset", False, None, ["a sunset over the sea"]),
          ("a dog", False, None, ["a photo of a dog", "a puppy"])]
lf = os.path.join(tmp, "labels.txt")
with open(lf, "w") as f:
    f.write("# label | flag | threshold | prompts\n\n")
    for name, flag, thr, prompts in LABELS:
        f.write("%s | %s | %s | %s\n" % (name, "yes" if flag else "no", "" if thr is None else thr, "; ".join(prompts)))


def moderate(*args, model=qf.TINY):
    return qf.run("moderate", *args, data=D, model=model)


ref = clip_ref.CLIPRef(qf.TINY)
scale = math.exp(float(ref.w["logit_scale"]))
labvec = []
for name, flag, thr, prompts in LABELS:
    e = sum(ref.embed_text(pr).double().numpy() for pr in prompts)
    labvec.append(e / np.linalg.norm(e))
con = sqlite3.connect("file:%s?mode=ro" % os.path.join(D, "clipdex.db"), uri=True)
stored = {os.fsdecode(pth) if isinstance(pth, bytes) else pth: (np.frombuffer(v, "<f2").astype(np.float64), h)
          for pth, v, h in con.execute("SELECT f.path, v.data, v.hash FROM files f "
                                       "JOIN vectors v ON v.id = f.vector_id WHERE f.state = 0")}
con.close()
paths = sorted(stored)
n_vec = len({h for _, h in stored.values()})  # files with the same bytes share a vector: scored once
expect = {}
for pth in paths:
    v = stored[pth][0]
    z = [scale * float(lv @ v) for lv in labvec]
    mx = max(z)
    e = [math.exp(x - mx) for x in z]
    for j, (name, flag, thr, prompts) in enumerate(LABELS):
        expect[(pth, name)] = e[j] / sum(e)
T.ok(len(paths) == F["n_files"] - 1 and abs(scale - 1 / 0.07) < 1e-3,
     "reference: %d indexed images, logit scale exp(%.4f) = %.3f" % (len(paths), math.log(scale), scale))

p = moderate("--labels", lf, "--threshold", "0", "--format", "json")
rows = qf.jsonl(p)
T.ok(p.returncode == 0, "moderate --labels: exit 0")
T.ok(len(rows) == 2 * len(paths), "--threshold 0: every image for both flagged labels (%d rows)" % len(rows))
err = max((abs(r["score"] - expect[(r["path"], r["label"])]) for r in rows), default=1)
T.ok(err < 2e-6, "probabilities = the reference's softmax(exp(logit_scale) * cos) over the label set "
     "(max err %.1e)" % err)
T.ok(all(r["labelset"].startswith("file:labels.txt#") for r in rows), "the label set is named after its file")
T.ok(b"scored %d images" % n_vec in p.stderr, "stderr: how many distinct images were scored (%d)" % n_vec)
T.ok(all({"path", "label", "score", "threshold", "sha256", "width"} <= set(r) for r in rows), "json: result fields")
sc = [r["score"] for r in rows]
T.ok(sc == sorted(sc, reverse=True), "rows: most probable first")

# the file's own thresholds
p = moderate("--labels", lf, "--format", "json")
got = sorted((r["path"], r["label"]) for r in qf.jsonl(p))
want = sorted((pth, name) for pth in paths for name, flag, thr, _ in LABELS if flag and expect[(pth, name)] >= thr)
T.ok(got == want, "per-label thresholds from the file (%d results)" % len(want))
p = moderate("--labels", lf, "--threshold", "1")
T.ok(p.returncode == 1 and p.stdout == b"", "nothing flagged: exit 1, no output")

# stored results and --new
p = moderate("--labels", lf, "--threshold", "0", "--new")
T.ok(p.returncode == 1 and b"scored 0 images" in p.stderr, "--new after a sweep: nothing left to score")
late = os.path.join(tmp, "late.png")
qf.scene(260, 180, 777).save(late)
w = subprocess.run([qf.MKSTORE, "--data", D, "--model", qf.TINY, late], capture_output=True)
p = moderate("--labels", lf, "--threshold", "0", "--new", "--format", "json")
rows = qf.jsonl(p)
T.ok(w.returncode == 0 and p.returncode == 0 and b"scored 1 image " in p.stderr and
     {r["path"] for r in rows} == {late}, "--new scores only the image indexed since")
T.ok(len(rows) == 2, "... and reports it for both labels")
p = moderate("--labels", lf, "--threshold", "0.01", "--new")
T.ok(b"scored %d images" % (n_vec + 1) in p.stderr, "another threshold is another label set: --new scores all")

# formats
p = moderate("--labels", lf, "--threshold", "0", "--format", "paths")
ps = p.stdout.decode().splitlines()
T.ok(len(ps) == len(set(ps)) == len(paths) + 1, "paths: each flagged image once")
p = moderate("--labels", lf, "--threshold", "0", "--format", "paths", "-0")
T.ok(len(p.stdout.split(b"\0")) == len(paths) + 2 and p.stdout.endswith(b"\0"), "paths -0")
p = moderate("--labels", lf, "--threshold", "0", "-n", "5")
T.ok(p.returncode == 0 and len(p.stdout.splitlines()) == 5, "-n 5: five rows")
full = qf.jsonl(moderate("--labels", lf, "--threshold", "0", "--format", "json"))
top5 = sorted((r["score"] for r in full), reverse=True)[:5]
T.ok(all(re.match(r"^[01]\.\d{3}  a (red car|bicycle) +  \d{4}-\d\d-\d\d \d\d:\d\d  /", l)
         for l in p.stdout.decode().splitlines()), "table: score, label, date, path")
T.ok([float(l.split()[0]) for l in p.stdout.decode().splitlines()] == [round(x, 3) for x in top5] or
     max(abs(float(l.split()[0]) - x) for l, x in zip(p.stdout.decode().splitlines(), top5)) <= 0.0006,
     "-n keeps the most probable results over all labels")
out = os.path.join(tmp, "mod.html")
p = moderate("--labels", lf, "--threshold", "0", "--format", "html", "-o", out)


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.h2, self.imgs, self.stack, self.bad = [], 0, [], False
        self.in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.imgs += tag == "img"
        self.in_h2 = tag == "h2"
        if tag not in ("img", "br", "meta"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        self.in_h2 = False
        if not self.stack or self.stack.pop() != tag:
            self.bad = True

    def handle_data(self, d):
        if self.in_h2:
            self.h2.append(d)


pg = Page()
pg.feed(open(out, encoding="utf-8").read())
pg.close()
T.ok(p.returncode == 0 and not pg.bad and not pg.stack, "html: parses")
T.ok(pg.h2 == ["a red car", "a bicycle"] and pg.imgs == 2 * (len(paths) + 1), "html: a section per flagged label")

# filters
p = moderate("--labels", lf, "--threshold", "0", "--under", os.path.join(F["lib"], "png"), "--format", "paths")
T.ok(sorted(p.stdout.decode().splitlines()) == sorted(F["png"]), "--under: only those images")

# presets, background
p = qf.run("moderate", "--list-presets", data=None, model=None)
names = [l.split(":")[0] for l in p.stdout.decode().splitlines() if not l.startswith(" ")]
T.ok(p.returncode == 0 and {"everyday", "nudity", "violence", "weapons", "drugs", "documents", "screenshots"} <= set(names),
     "--list-presets: the built-in sets")
p = moderate("--preset", "weapons", "--threshold", "0", "--format", "json", "-n", "3")
rows = qf.jsonl(p)
T.ok(p.returncode == 0 and len(rows) == 3 and rows[0]["labelset"].startswith("weapons+everyday#"),
     "--preset weapons runs, against the everyday background")
p = moderate("--preset", "documents", "--preset", "screenshots", "--threshold", "0", "--format", "json", "-n", "1")
T.ok(p.returncode == 0 and qf.jsonl(p)[0]["labelset"].startswith("documents+screenshots+everyday#"), "presets combine")
p = moderate("--threshold", "0", "--format", "json", "-n", "1", model=None)
T.ok(p.returncode == 0 and "nudity" in qf.jsonl(p)[0]["labelset"], "no set given: all presets (the store's model)")
only = os.path.join(tmp, "only.txt")
with open(only, "w") as f:
    f.write("a red car | yes | 0\n")
p = moderate("--labels", only, "--format", "json", "-n", "1")
T.ok(p.returncode == 0 and qf.jsonl(p)[0]["labelset"].startswith("file:only.txt+everyday#"),
     "flagged labels only: the everyday background is added")
T.ok(qf.jsonl(p)[0]["score"] < 0.9, "... and competes (score %.3f)" % qf.jsonl(p)[0]["score"])

# errors
bad = os.path.join(tmp, "bad.txt")
for text, what in (("ok | yes\nbroken | maybe\n", b"bad.txt:2:"), ("x | yes | 1.5\n", b"bad.txt:1:"),
                   ("# nothing\n", b"no labels"), ("a | yes\na | no\n", b"bad.txt:2:")):
    with open(bad, "w") as f:
        f.write(text)
    p = moderate("--labels", bad)
    T.ok(p.returncode == 3 and what in p.stderr, "bad label file: exit 3, '%s'" % what.decode())
p = moderate("--labels", os.path.join(tmp, "missing.txt"))
T.ok(p.returncode == 3 and b"missing.txt" in p.stderr, "missing label file: exit 3")
with open(bad, "w") as f:
    f.write("a | no\nb | no\n")
p = moderate("--labels", bad)
T.ok(p.returncode == 2, "no flagged label: usage error")
for args, name in ((["--preset", "nosuch"], "unknown preset"), (["--threshold", "2"], "threshold over 1"),
                   (["-0"], "-0 without paths"), (["extra"], "positional argument")):
    p = moderate(*args)
    T.ok(p.returncode == 2, "usage error: %s (exit 2)" % name)

shutil.rmtree(tmp)
sys.exit(T.done())
