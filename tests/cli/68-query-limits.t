#!/usr/bin/python3
"""68-query-limits.t - `-n K` means K results whenever that many exist.

On the query tests' generated library (tests/tools/query_fixture.py):
`clipdex search -n K` returns exactly K files for every K up to the number
of indexed files, and `clipdex similar -n K PATH` exactly K for every K up
to that number minus one (the query file itself is left out, so a search
for K hits that counted it would come back one short).  The expected
counts come from the library's size and -n's definition, not from
clipdex's own output; the file set is checked too (similar = all indexed
files but the query, each once).
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-68-")
try:
    F = qf.build(tmp)
    D = F["data"]
    # Every file of the library but the one that cannot be decoded
    # (F["bad"]) has a vector: that is how many a search can return.
    total = F["n_files"] - 1
    T.diag("%d files, %d indexed with a vector" % (F["n_files"], total))

    def paths(*args):
        p = qf.run(*args, "--format", "json", data=D)
        if p.returncode != 0:
            T.diag(p.stderr.decode(errors="replace"))
            return None
        return [r["path"] for r in qf.jsonl(p)]

    every = paths("search", "-n", "1000", "--text", "a photo")
    T.ok(every is not None and len(every) == total and len(set(every)) == total,
         "search -n 1000: every indexed file once (%s of %d)" % (every and len(every), total))
    bad = [k for k in (1, 2, 3, 7, total - 1, total)
           if len(paths("search", "-n", str(k), "--text", "a photo") or []) != k]
    T.ok(not bad, "search -n K returns K files for K = 1, 2, 3, 7, all-1, all (wrong for %s)" % bad)

    q = F["scenes"][0]["path"]
    others = sorted(p for p in (every or []) if p != q)
    got = paths("similar", "-n", "1000", q)
    T.ok(got is not None and sorted(got) == others,
         "similar -n 1000: every indexed file but the query, once (%s of %d)" % (got and len(got), len(others)))
    bad = []
    for k in (1, 2, 3, 7, total - 2, total - 1):
        r = paths("similar", "-n", str(k), q)
        if r is None or len(r) != k or q in r:
            bad.append((k, None if r is None else len(r)))
    T.ok(not bad, "similar -n K returns K other files for K = 1, 2, 3, 7, all-2, all-1 (wrong: %s)" % bad)
    r = paths("similar", "-n", str(total), q)
    T.ok(r is not None and len(r) == total - 1, "similar -n all: all the others (%s)" % (r and len(r)))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
