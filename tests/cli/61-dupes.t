#!/usr/bin/python3
"""61-dupes.t - `clipdex dupes` on the generated library
(tests/tools/query_fixture.py): real corpus photos with resized,
recompressed and cropped copies, an exact copy, pixel- vs EXIF-rotated
pairs, and unrelated pictures.

Checks: the copies are grouped with their original (recall) and no group
mixes different pictures (precision); the best copy is first by the
documented order; each method on its own; thresholds; the paths format
lists exactly the non-best copies; json and html parse; filters; usage
errors; and nothing is ever deleted.
"""
import html.parser
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-61-")
F = qf.build(tmp)
D = F["data"]
T.diag("copies: %s" % ", ".join(F["transforms"]))
if "crop2" not in F["transforms"]:
    T.diag("the shared corpus is missing (%s): generated stand-ins, no crops" % qf.CORPUS)


def dupes(*args, model=None):
    return qf.run("dupes", *args, data=D, model=model)


def groups(p):
    return [g["files"] for g in qf.jsonl(p)]


# family of every file: which original picture it shows
family = {}
for i, s in enumerate(F["scenes"]):
    family[s["path"]] = "scene%d" % i
family[F["copy"]] = "scene0"
for i, p in enumerate(F["png"]):
    family[p] = "png%d" % i
for k, fam in enumerate(F["families"]):
    for p in fam + F["rot_pairs"][k]:
        family[p] = "corpus%d" % k


def when(f):
    return f["taken_at"] or f["mtime"]


def best_first(files):
    """Is the order the documented one: pixels, size, age, path?"""
    key = [(-f["width"] * f["height"], -f["size"], when(f), f["path"]) for f in files]
    return key[0] == min(key) and files[0]["best"] and not any(f["best"] for f in files[1:])


p = dupes("--format", "json")
G = groups(p)
T.ok(p.returncode == 0 and len(G) >= 4, "default (exact,visual): exit 0, %d groups" % len(G))
where = {f["path"]: gi for gi, g in enumerate(G) for f in g}
T.ok(all(len({family[f["path"]] for f in g}) == 1 for g in G), "precision: no group mixes different pictures")
T.ok(where.get(F["copy"]) is not None and where.get(F["copy"]) == where.get(F["scenes"][0]["path"]),
     "the exact copy is grouped with its original")
g0 = G[where[F["copy"]]]
T.ok(g0[0]["path"] == F["scenes"][0]["path"] and g0[1]["match"] == "exact",
     "exact pair: the older file is kept, the copy is 'exact'")
for k, fam in enumerate(F["families"]):
    name = os.path.basename(fam[0]).rsplit("-", 1)[0]
    gi = where.get(fam[0])
    for p, kind in zip(fam[1:], F["transforms"]):
        T.ok(gi is not None and where.get(p) == gi, "recall: %s %s grouped with its original" % (name, kind))
    g = G[gi] if gi is not None else []
    T.ok(g and best_first(g), "%s: best copy first (most pixels, largest, oldest)" % name)
    T.ok(g and all(f["distance"] is not None and f["distance"] <= 10 for f in g[1:]) or not g,
         "%s: visual members within the default 10 bits of the best copy" % name)
# the EXIF-rotated copy is shown (and hashed) upright: the indexer
# applied its orientation, as the fixture wrote it
for k, (pix, ex) in enumerate(F["rot_pairs"]):
    T.ok(where.get(pix) is not None and where.get(pix) == where.get(ex),
         "pixel-rotated and EXIF-rotated copies grouped (%s)" % os.path.basename(pix))
    orient = [f["orientation"] for g in G for f in g if f["path"] == ex]
    T.ok(orient == [6], "... the EXIF-rotated copy's orientation 6 is stored (%s)" % orient)
T.ok(all(best_first(g) for g in G), "every group: best copy first, one best")
T.ok(F["bad"] not in where, "the undecodable file is in no group")

# methods and thresholds
p = dupes("--method", "exact", "--format", "json")
G2 = groups(p)
T.ok(p.returncode == 0 and len(G2) == 1 and {f["path"] for f in G2[0]} == {F["copy"], F["scenes"][0]["path"]},
     "--method exact: only identical bytes")
p10 = dupes("--format", "json", "--method", "exact,visual", "--threshold", "10")
T.ok(p10.stdout == p.stdout or groups(p10) == G, "--threshold 10 is the default")
p = dupes("--method", "visual", "--threshold", "0", "--format", "json")
T.ok(p.returncode == 0 and all(f["distance"] == 0 for g in groups(p) for f in g), "--threshold 0: identical pHashes only")
p = dupes("--method", "visual", "--threshold", "32", "--format", "json")
T.ok(p.returncode == 0 and len(groups(p)) >= 1 and len(groups(p)) <= len(G), "--threshold 32: coarser groups")
p = dupes("--method", "semantic", "--threshold", "0.99999", "--format", "json", model=qf.TINY)
GS = groups(p)
T.ok(p.returncode == 0 and any({f["path"] for f in g} >= {F["copy"], F["scenes"][0]["path"]} for g in GS),
     "--method semantic: files sharing a vector are grouped")
# (members reached through a chain may be a little further from the kept copy)
T.ok(GS and all(f["cosine"] is not None and f["cosine"] > 0.99 for g in GS for f in g),
     "semantic: every member's cosine to the kept copy")
p = dupes("--method", "semantic", "--threshold", "-1", "--format", "json", model=qf.TINY)
T.ok(p.returncode == 0 and len(groups(p)) == 1 and len(groups(p)[0]) == F["n_files"] - 1,
     "semantic --threshold -1: everything is one group")
p = dupes("--method", "semantic", "--format", "json")
T.ok(p.returncode == 0, "semantic without --model: the store's model")

# formats
p = dupes("--format", "paths")
want = sorted(f["path"] for g in G for f in g[1:])
T.ok(sorted(p.stdout.decode().splitlines()) == want, "paths: exactly the non-best copies (%d)" % len(want))
p = dupes("--format", "paths", "-0")
T.ok(sorted(x.decode() for x in p.stdout.split(b"\0")[:-1]) == want, "paths -0")
p = dupes()
heads = [l for l in p.stdout.decode().splitlines() if l.startswith("group ")]
T.ok(len(heads) == len(G) and "keep" in p.stdout.decode(), "table: a header per group, the kept copy marked")
out = os.path.join(tmp, "dupes.html")
p = dupes("--format", "html", "-o", out)


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections = self.imgs = 0
        self.stack = []

    def handle_starttag(self, tag, attrs):
        self.sections += tag == "section"
        self.imgs += tag == "img" and dict(attrs).get("src", "").startswith("data:image/jpeg;base64,")
        if tag not in ("img", "br", "meta"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag


pg = Page()
try:
    pg.feed(open(out, encoding="utf-8").read())
    pg.close()
    parsed = not pg.stack
except (AssertionError, IndexError, OSError):
    parsed = False
T.ok(p.returncode == 0 and parsed, "html: written and parses")
T.ok(pg.sections == len(G) and pg.imgs == sum(len(g) for g in G), "html: a section per group, a thumbnail per file")

# filters
p = dupes("--under", os.path.join(F["lib"], "png"))
T.ok(p.returncode == 1 and p.stdout == b"", "no duplicates under a directory: exit 1, no output")
p = dupes("--under", os.path.join(F["lib"], "dupes"), "--format", "json")
T.ok(p.returncode == 0 and all("/dupes/" in f["path"] for g in groups(p) for f in g), "--under restricts the files")
p = dupes("--ext", "png")
T.ok(p.returncode == 1, "--ext png: nothing")

# usage
for args, name in ((["--method", "fuzzy"], "unknown method"), (["--method", "visual,semantic", "--threshold", "5"],
                   "--threshold with two methods"), (["--threshold", "40"], "--threshold over 32 bits"),
                   (["--method", "exact", "--threshold", "3"], "--threshold with exact"),
                   (["--method", "semantic", "--threshold", "1.5"], "cosine over 1"), (["somedir"], "a positional argument"),
                   (["-0"], "-0 without paths"), (["--format", "csv"], "bad format")):
    p = dupes(*args)
    T.ok(p.returncode == 2, "usage error: %s (exit 2)" % name)
T.ok(all(os.path.exists(x) for x in family), "dupes never deletes anything")

shutil.rmtree(tmp)
sys.exit(T.done())
