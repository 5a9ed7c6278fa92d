#!/usr/bin/python3
"""67-filter-bounds.t - every filter's limit, checked on both sides of the
line, on files placed exactly on it.

  --after D / --before D with EXIF capture dates: files taken at D - 1 s,
      D and D + 1 s (their mtimes far away, so only the EXIF date can
      decide); --after keeps D (>=), --before drops it (<).
  --after D / --before D with modification times (files without EXIF):
      mtimes D - 1 s, D - 1 ns, exactly D, D + 1 ns, D + 1 s; a file
      modified within the second before D is before D, one modified
      within the second from D is not.
  A file whose EXIF date is before D but modified after D goes by its
  EXIF date.  Every date form (YYYY, YYYY-MM-DD, full time, @UNIX) names
  the same instant.
  --min-score S: a result scoring exactly S is kept, and dropped at the
      next float above S.
  -n N: exactly N when more match, all when N is the number of matches
      or more; with a filter too.

The expected sets come from the times the fixture wrote, not from
clipdex's output.  Dates are UTC (TZ=UTC).
"""
import calendar
from fractions import Fraction
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-67-")
lib = os.path.realpath(os.path.join(tmp, "lib"))
D = os.path.join(tmp, "data")
ENV = {"TZ": "UTC"}

EXIF_D = calendar.timegm((2020, 1, 1, 0, 0, 0))      # the EXIF boundary
MT_D = calendar.timegm((2010, 6, 1, 0, 0, 0))        # the mtime boundary
FAR = calendar.timegm((2003, 3, 3, 3, 3, 3))         # mtimes of the EXIF files
NS = 10 ** 9

when = {}      # path -> the instant that counts, in nanoseconds (exact integers)
seed = [500]


def picture(path, exif_when=None, mtime_ns=None):
    seed[0] += 1
    im = qf.scene(200 + seed[0] % 40, 150, seed[0])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if exif_when is not None:
        im.save(path, quality=90, exif=qf.exif("Canon", "Canon EOS 5D", exif_when))
    else:
        im.save(path)
    os.utime(path, ns=(mtime_ns, mtime_ns))


for tag, dt in (("m1s", -1), ("at", 0), ("p1s", 1)):
    p = os.path.join(lib, "exif", "taken-%s.jpg" % tag)
    picture(p, exif_when=EXIF_D + dt, mtime_ns=FAR * NS)
    when[p] = (EXIF_D + dt) * NS
# taken before the line, modified after it: the EXIF date counts
p = os.path.join(lib, "exif", "taken-m1s-modified-after.jpg")
picture(p, exif_when=EXIF_D - 1, mtime_ns=(EXIF_D + 3600) * NS)
when[p] = (EXIF_D - 1) * NS
for tag, dns in (("m1s", -NS), ("m1ns", -1), ("at", 0), ("p1ns", 1), ("p1s", NS)):
    p = os.path.join(lib, "mtime", "modified-%s.png" % tag)
    picture(p, mtime_ns=MT_D * NS + dns)
    when[p] = MT_D * NS + dns
FILES = sorted(when)

p = qf.sanitizer_check(subprocess.run([qf.CLIPDEX, "index", "--data", D, "--model", qf.TINY, lib],
                                      capture_output=True, env=qf.clean_env()), "clipdex index")
T.ok(p.returncode == 0, "clipdex index: exit 0")
if p.returncode:
    T.diag(p.stderr.decode(errors="replace")[-2000:])


def search(*args):
    return qf.run("search", "--format", "paths", "-n", "1000", *args, data=D, env=ENV)


def paths(p):
    return sorted(p.stdout.decode().splitlines())


T.ok(paths(search("x")) == FILES, "every file indexed (%d)" % len(FILES))


def check(args, pred, name, sub=None):
    """pred(t): should a file whose time is t seconds (an exact fraction)
    pass the filter?"""
    p = search(*args, "x")
    want = sorted(f for f in FILES if (not sub or "/%s/" % sub in f) and pred(Fraction(when[f], NS)))
    got = paths(p)
    ok = T.ok(got == want and p.returncode == (0 if want else 1),
              "%s: %s" % (name, ", ".join(os.path.basename(f) for f in want) or "nothing"))
    if not ok:
        T.diag("got: %s\n%s" % (", ".join(os.path.basename(f) for f in got), p.stderr.decode()))


for B, what, forms in ((EXIF_D, "EXIF date", ["2020", "2020-01-01", "2020-01-01T00:00:00", "@%d" % EXIF_D]),
                       (MT_D, "mtime", ["2010-06-01", "2010-06-01T00:00:00", "@%d" % MT_D])):
    sub = "exif" if what == "EXIF date" else "mtime"
    under = ["--under", os.path.join(lib, sub)]
    for form in forms:
        check(under + ["--after", form], lambda t: t >= B,
              "%s: --after %s keeps the file on the line" % (what, form), sub)
        check(under + ["--before", form], lambda t: t < B,
              "%s: --before %s drops the file on the line" % (what, form), sub)
    check(under + ["--after", "@%d" % (B + 1)], lambda t: t >= B + 1, "%s: --after the next second" % what, sub)
    check(under + ["--before", "@%d" % (B + 1)], lambda t: t < B + 1, "%s: --before the next second" % what, sub)
    check(under + ["--after", "@%d" % B, "--before", "@%d" % (B + 1)], lambda t: B <= t < B + 1,
          "%s: --after D --before D+1s: the second from D" % what, sub)
    check(under + ["--after", "@%d" % B, "--before", "@%d" % B], lambda t: False,
          "%s: --after D --before D: nothing" % what, sub)
# without --under: both kinds of files at once
check(["--after", "@%d" % MT_D, "--before", "@%d" % EXIF_D], lambda t: MT_D <= t < EXIF_D,
      "--after the mtime line --before the EXIF line")

# ---- --min-score: on the line and just above it
full = qf.jsonl(qf.run("search", "--format", "json", "-n", "1000", "a red car", data=D))
T.ok(len(full) == len(FILES), "json: every file ranked")
for k in (0, 4, len(full) - 1):
    s = np.float32(full[k]["score"])
    T.ok(np.float32("%.9g" % s) == s, "score %d printed to the float (%s)" % (k + 1, full[k]["score"]))
    for cut, name, keep in ((s, "= score", lambda x: x >= s),
                            (np.nextafter(s, np.float32(2)), "= next float above", lambda x: x > s)):
        p = qf.run("search", "--format", "json", "-n", "1000", "--min-score", "%.9g" % cut, "a red car", data=D)
        got = [r["path"] for r in qf.jsonl(p)]
        want = [r["path"] for r in full if keep(np.float32(r["score"]))]
        T.ok(got == want and (p.returncode == 0) == bool(want),
             "--min-score %s of result %d: %d results" % (name, k + 1, len(want)))

# ---- -n
N = len(FILES)
for n, want in ((1, 1), (N - 1, N - 1), (N, N), (N + 1, N)):
    p = qf.run("search", "--format", "paths", "-n", str(n), "a red car", data=D)
    got = p.stdout.decode().splitlines()
    T.ok(p.returncode == 0 and got == [r["path"] for r in full[:want]], "-n %d: the top %d" % (n, want))
m = len([f for f in FILES if "/mtime/" in f])
for n, want in ((m - 1, m - 1), (m, m), (m + 1, m)):
    p = qf.run("search", "--format", "paths", "-n", str(n), "--under", os.path.join(lib, "mtime"), "a red car",
               data=D)
    got = p.stdout.decode().splitlines()
    T.ok(p.returncode == 0 and got == [r["path"] for r in full if "/mtime/" in r["path"]][:want],
         "-n %d with a filter matching %d: %d" % (n, m, want))

shutil.rmtree(tmp)
sys.exit(T.done())
