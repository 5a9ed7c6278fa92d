#!/usr/bin/python3
"""60-search.t - `clipdex search` and `clipdex similar` on a generated
library indexed with the tiny random model (tests/tools/query_fixture.py).

Random weights say nothing about relevance, so the checks are about
mechanics: limits and cutoffs hold, every filter really filters and is
applied together with the vector search (a filtered search still returns
-n results when that many files match), the term arithmetic gives exactly
the scores computed from single-term searches, image terms use stored
vectors (indexed path, or the same content elsewhere) or the vision
tower (new file), each output format parses (json with a JSON parser, html
with an HTML parser, thumbnails that decode as JPEG), exit codes, the
default model from the store, and reading while a writer holds the store.
"""
import base64
import html.parser
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402
from PIL import Image  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-60-")
F = qf.build(tmp)
D = F["data"]
TRUTH = F["truth"]   # what the fixture wrote into each file: date, camera
ALL = "1000"


def search(*args, data=D, **kw):
    return qf.run("search", *args, data=data, **kw)


def js(p):
    return qf.jsonl(p)


# ---- basics, limits, cutoffs
p = search("a", "red", "car")
lines = p.stdout.decode().splitlines()
T.ok(p.returncode == 0 and 0 < len(lines) <= 20, "search: exit 0, at most 20 results by default (%d)" % len(lines))
scores = [float(l.split()[0]) for l in lines]
T.ok(scores == sorted(scores, reverse=True), "table: best first")
T.ok(all(l.split("  ")[-1].startswith(F["lib"]) for l in lines), "table: the path is the last column, whole")

full = js(search("--format", "json", "-n", ALL, "a red car"))
T.ok(len(full) == F["n_files"] - 1, "json: every indexed file once (%d), the broken one absent" % len(full))
T.ok(all(r["path"] != F["bad"] for r in full), "the file that failed to decode is never a result")
T.ok([r["rank"] for r in full] == list(range(1, len(full) + 1)), "json: ranks 1..n")
fields = {"path", "score", "rank", "size", "mtime", "taken_at", "width", "height", "orientation", "camera_make",
          "camera_model", "gps", "sha256", "phash", "ext", "indexed_at", "file_id", "vector_id"}
T.ok(all(fields <= set(r) for r in full), "json: every metadata field present")
T.ok(all(-1.0001 <= r["score"] <= 1.0001 for r in full), "scores are cosines")

p = search("--format", "json", "-n", "5", "a red car")
T.ok(len(js(p)) == 5 and [r["path"] for r in js(p)] == [r["path"] for r in full[:5]], "-n 5: the top 5")
cut = full[6]["score"]
p = search("--format", "json", "-n", ALL, "--min-score", repr(cut), "a red car")
want = [r["path"] for r in full if r["score"] >= cut]
T.ok([r["path"] for r in js(p)] == want, "--min-score: exactly the results at or above the cutoff (%d)" % len(want))
p = search("--min-score", "1", "a red car")
T.ok(p.returncode == 1 and p.stdout == b"", "nothing above the cutoff: exit 1, no output")

# ---- filters (on the store clipdex index built), together with the search.
# Which files must match is decided from what the fixture wrote (TRUTH),
# never from clipdex's output; the unfiltered ranking gives the order.
fm = js(search("--format", "json", "-n", ALL, "a red car"))
byp = {r["path"]: r for r in fm}


def fact(r):
    t = dict(TRUTH[r["path"]])
    t["path"] = r["path"]
    return t


def check_filter(args, pred, name, n=ALL):
    p = search("--format", "json", "-n", n, *args, "a red car")
    got = [r["path"] for r in js(p)]
    want = [r["path"] for r in fm if pred(fact(r))]
    if n != ALL:
        want = want[:int(n)]
    ok = T.ok(got == want and (p.returncode == 0) == bool(want), "filter %s: %d results" % (name, len(want)))
    if not ok:
        T.diag("got  %s\nwant %s\n%s" % (got, want, p.stderr.decode()))


def when(t):
    return t["when"]


import calendar  # noqa: E402
y2020, y2021 = calendar.timegm((2020, 1, 1, 0, 0, 0)), calendar.timegm((2021, 1, 1, 0, 0, 0))
check_filter(["--after", "2020"], lambda r: when(r) >= y2020, "--after 2020")
check_filter(["--before", "2020-01-01"], lambda r: when(r) < y2020, "--before 2020-01-01")
check_filter(["--after", "2020", "--before", "2021"], lambda r: y2020 <= when(r) < y2021, "--after 2020 --before 2021")
check_filter(["--after", "@%d" % y2021], lambda r: when(r) >= y2021, "--after @UNIXTIME")
check_filter(["--after", "2019-03-01T00:00:00"], lambda r: when(r) >= calendar.timegm((2019, 3, 1, 0, 0, 0)),
             "--after 2019-03-01T00:00:00")
check_filter(["--under", os.path.join(F["lib"], "png")], lambda r: "/png/" in r["path"], "--under DIR")
check_filter(["--under", os.path.join(F["lib"], "png") + "/"], lambda r: "/png/" in r["path"], "--under DIR/")
check_filter(["--under", os.path.join(F["lib"], "pn")], lambda r: False, "--under is a directory, not a prefix")
check_filter(["--camera", "canon"], lambda r: "Canon" in r["make"] + r["model"], "--camera (case-insensitive)")
check_filter(["--camera", "iPhone"], lambda r: "iPhone" in r["model"], "--camera iPhone")
check_filter(["--ext", "png"], lambda r: r["ext"] == "png", "--ext png")
check_filter(["--ext", "PNG,.jpg"], lambda r: r["ext"] in ("png", "jpg"), "--ext PNG,.jpg")
check_filter(["--ext", "png", "--ext", "gif"], lambda r: r["ext"] == "png", "--ext repeated")
check_filter(["--camera", "canon", "--after", "2020"],
             lambda r: "Canon" in r["make"] and when(r) >= y2020, "--camera and --after together")
# a filter matching few, low-ranked files still fills -n
pngs = [r["path"] for r in fm if r["ext"] == "png"]
check_filter(["--ext", "png"], lambda r: r["ext"] == "png", "--ext png -n 3 (filters go with the search)", n="3")
T.ok(min(fm.index(byp[x]) for x in pngs[:3]) >= 0, "png results exist in the unfiltered ranking")
n_canon = len([s for s in F["scenes"] if s["make"] == "Canon"]) + 1  # + the copy
p = search("--format", "paths", "-n", ALL, "--camera", "canon", "x")
T.ok(len(p.stdout.splitlines()) == n_canon and n_canon == 7, "--camera from the EXIF the indexer read (%d files)" % n_canon)

# ---- image terms, arithmetic
s0 = F["scenes"][0]["path"]
s5 = F["scenes"][5]["path"]
p = search("--format", "json", "-n", "2", "--image", s0)
r = js(p)
T.ok(p.returncode == 0 and {x["path"] for x in r} == {s0, F["copy"]} and all(abs(x["score"] - 1) < 2e-3 for x in r),
     "--image of an indexed file: itself and its copy first, score 1")
moved = os.path.join(tmp, "elsewhere.jpg")
shutil.copy(s0, moved)
p = search("--format", "json", "-n", "2", "--image", moved)
T.ok(p.returncode == 0 and {x["path"] for x in js(p)} == {s0, F["copy"]}, "--image of unindexed copy: found by content")
new = os.path.join(tmp, "new.png")
qf.scene(200, 150, 999).save(new)
p = search("--format", "json", "-n", "3", "--image", new)
T.ok(p.returncode == 0 and len(js(p)) == 3, "--image of a new file: embedded with the vision tower")
if p.returncode:
    T.diag(p.stderr.decode())


def scores(*args):
    return {r["path"]: r["score"] for r in js(search("--format", "json", "-n", ALL, *args))}


sa, sb, st = scores("--image", s0), scores("--image", s5), scores("--text", "a red car")
ab, ta, tb = sa[s5], st[s0], st[s5]
got = scores("--weight", "2", "--image", s0, "--not-image", s5)
norm = math.sqrt(4 + 1 - 4 * ab)
err = max(abs(got[k] - (2 * sa[k] - sb[k]) / norm) for k in sa)
T.ok(err < 2e-4, "2*image - image: scores as computed from single terms (max err %.1e)" % err)
got = scores("a", "red", "car", "--image", s0, "--weight", "0.5", "--not-image", s5)
norm = math.sqrt(1 + 1 + 0.25 + 2 * ta - tb - ab)
err = max(abs(got[k] - (st[k] + sa[k] - 0.5 * sb[k]) / norm) for k in sa)
T.ok(err < 2e-4, "QUERY + image - 0.5*image (max err %.1e)" % err)
s1 = scores("--text", "a", "--text", "b")
s2 = scores("--text", "b", "--text", "a")
T.ok(max(abs(s1[k] - s2[k]) for k in s1) < 1e-6, "term order does not matter")
t_s, t_p = scores("--text", "sunset"), scores("--text", "people")
t_sp, t_smp = scores("--text", "sunset", "--text", "people"), scores("--text", "sunset", "--not", "people")
# <sunset, people> from the sum: score(x) = (s.x + p.x) / sqrt(2 + 2c)
k0 = max(t_s, key=lambda k: abs(t_s[k] + t_p[k]))
c = ((t_s[k0] + t_p[k0]) / t_sp[k0]) ** 2 / 2 - 1
err = max(abs(t_smp[k] - (t_s[k] - t_p[k]) / math.sqrt(2 - 2 * c)) for k in t_s)
T.ok(err < 1e-3, "--not: text minus text (max err %.1e)" % err)

# ---- similar
p = qf.run("similar", "--format", "json", "-n", ALL, s0, data=D)
r = js(p)
T.ok(p.returncode == 0 and s0 not in [x["path"] for x in r], "similar: the query file itself is left out")
T.ok(r and r[0]["path"] == F["copy"] and abs(r[0]["score"] - 1) < 2e-3, "similar: its exact copy first, score 1")
T.ok([x["path"] for x in r] == [k for k in sorted(sa, key=lambda k: -sa[k]) if k != s0] or
     sorted(x["path"] for x in r) == sorted(k for k in sa if k != s0), "similar = search --image minus itself")
p = qf.run("similar", "-n", "1", moved, data=D)
T.ok(p.returncode == 0 and p.stdout.decode().split("  ")[-1].strip() in (s0, F["copy"]),
     "similar of an unindexed copy finds the original")

# ---- output formats
p = search("--format", "paths", "-n", "7", "a red car")
T.ok(p.stdout.decode().splitlines() == [r["path"] for r in full[:7]], "paths: one per line, same order")
p = search("--format", "paths", "-0", "-n", "7", "a red car")
T.ok(p.stdout.split(b"\0")[:-1] == [r["path"].encode() for r in full[:7]] and p.stdout.endswith(b"\0"),
     "paths -0: NUL-terminated")
out = os.path.join(tmp, "gallery.html")
p = search("--format", "html", "-o", out, "-n", "12", "a red car")
T.ok(p.returncode == 0 and os.path.exists(out) and p.stdout == b"", "html -o FILE: written, nothing on stdout")
T.ok(out.encode() in p.stderr, "html -o: says where the gallery went")


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.stack, self.paths, self.errors = [], [], [], []
        self.in_path = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "span" and a.get("class") == "path":
            self.in_path = True
        if tag not in ("img", "br", "meta"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)
        if tag == "span":
            self.in_path = False

    def handle_data(self, data):
        if self.in_path:
            self.paths.append(data)


pg = Page()
with open(out, encoding="utf-8") as f:
    pg.feed(f.read())
pg.close()
T.ok(not pg.errors and not pg.stack, "html: parses, every element closed")
T.ok(len(pg.imgs) == 12 and all(s.startswith("data:image/jpeg;base64,") for s in pg.imgs),
     "html: 12 embedded JPEG thumbnails (%d)" % len(pg.imgs))
okj = True
for s in pg.imgs:
    im = Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))
    im.load()
    okj &= im.format == "JPEG" and max(im.size) <= 256
T.ok(okj, "html: every thumbnail decodes as a JPEG within 256x256")
T.ok(pg.paths == [r["path"] for r in full[:12]], "html: the paths under the thumbnails, in rank order")
p = search("--format", "html", "-n", "2", "a red car")
T.ok(p.returncode == 0 and p.stdout.startswith(b"<!DOCTYPE html>"), "html without -o: on stdout")

# ---- model from the store, environment
p = qf.run("search", "--data", D, "a red car", model=None)
T.ok(p.returncode == 0 and len(p.stdout.splitlines()) == 20, "no --model: the model the store was indexed with")
p = qf.run("search", "a red car", model=None, env={"CLIPDEX_DATA": D, "CLIPDEX_MODEL": qf.TINY})
T.ok(p.returncode == 0, "CLIPDEX_DATA and CLIPDEX_MODEL")

# ---- errors and exit codes
for args, name in ((["--format", "xml", "q"], "bad --format"), (["--after", "2020-13", "q"], "bad date"),
                   (["--after", "2021-02-30", "q"], "impossible date"), (["-n", "0", "q"], "-n 0"),
                   (["--min-score", "2", "q"], "--min-score out of range"), (["-0", "q"], "-0 without paths"),
                   ([], "no query"), (["--not", "x"], "only negative terms"), (["--weight", "2", "q"], "dangling --weight"),
                   (["--weight", "-1", "--text", "q"], "negative --weight")):
    p = search(*args)
    T.ok(p.returncode == 2 and b"usage:" in p.stderr, "usage error: %s (exit 2)" % name)
p = search("q", data=os.path.join(tmp, "nostore"))
T.ok(p.returncode == 3 and b"clipdex index" in p.stderr, "missing store: exit 3, says how to create one")
p = search("q", model=os.path.join(qf.ROOT, "build", "testdata", "models", "tiny-gelu"))
T.ok(p.returncode == 3 and b"model" in p.stderr, "model without vectors in the store: exit 3")
T.ok(p.stderr.count(b"\n") == 1, "... in one line")
p = search("--image", os.path.join(tmp, "nope.jpg"))
T.ok(p.returncode == 3 and b"nope.jpg" in p.stderr, "missing --image file: exit 3 naming it")
p = qf.run("similar", data=D)
T.ok(p.returncode == 2, "similar without PATH: exit 2")
p = qf.run("similar", "--text", "x", s0, data=D)
T.ok(p.returncode == 2, "similar takes no search terms")

# ---- reading while a writer holds the store, seeing its commits
extra = os.path.join(tmp, "late", "late.png")
os.makedirs(os.path.dirname(extra))
qf.scene(220, 160, 4242).save(extra)
w = subprocess.Popen([qf.MKSTORE, "--data", D, "--model", qf.TINY, "--hold", "20", extra],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
line = w.stdout.readline()
p = search("--format", "paths", "-n", ALL, "--under", os.path.dirname(extra), "x")
T.ok(line == b"committed\n" and p.returncode == 0 and p.stdout.decode().strip() == extra,
     "search while a writer holds the store sees what it committed")
if p.returncode:
    T.diag(p.stderr.decode())
w.terminate()
w.wait()

shutil.rmtree(tmp)
sys.exit(T.done())
