#!/usr/bin/python3
"""63-stats.t - `clipdex stats` on the generated library: counts by
format, year and camera agree with what the fixture wrote into the files
(EXIF dates and cameras, modification times), on the store `clipdex index`
built; the store's models, both output formats, errors."""
import collections
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-63-")
F = qf.build(tmp)
DM = F["data"]

p = qf.run("stats", "--format", "json", data=DM, model=None)
T.ok(p.returncode == 0, "stats --format json: exit 0")
s = json.loads(p.stdout)
T.ok(s["files"] == F["n_files"] and s["indexed"] == F["n_files"] - 1 and s["failed"] == 1,
     "files, indexed, failed (%d/%d/%d)" % (s["files"], s["indexed"], s["failed"]))
T.ok(s["formats"] == {"jpg": F["n_files"] - 5, "png": 4}, "formats by extension: %s" % s["formats"])
years = collections.Counter()
for sc in F["scenes"]:
    years[str(sc["year"])] += 1
years["2018"] += 1                      # the exact copy carries scene00's date
years["2015"] += len(F["png"])          # no capture date: modification time
years["2016"] += F["n_files"] - 1 - sum(years.values())   # the duplicate families
T.ok(s["years"] == dict(years), "years (taken, else modified): %s" % s["years"])
T.ok(s["cameras"] == {"Canon EOS 5D": 7, "Apple iPhone 12": 6, "(unknown)": F["n_files"] - 14},
     "cameras, the make not repeated: %s" % s["cameras"])
m = s["models"]
T.ok(len(m) == 1 and m[0]["dim"] == 32 and m[0]["current"] and m[0]["vectors"] == F["n_files"] - 2,
     "the model and its vector count (copies share one)")
T.ok(s["db_bytes"] > 0 and s["schema_version"] >= 1, "store size and schema version")
# The FAISS size is the index files' on disk (stats opens no model: it
# once printed 0 B beside a 6 kB Flat index).
faiss = sum(os.path.getsize(os.path.join(DM, f)) for f in os.listdir(DM) if f.endswith(".faiss"))
T.ok(faiss > 0 and s["faiss_bytes"] == faiss, "faiss_bytes is the index files' size (%d, on disk %d)"
     % (s["faiss_bytes"], faiss))

p = qf.run("stats", data=DM, model=None)
out = p.stdout.decode()
T.ok(p.returncode == 0 and "files     %d (%d indexed, 1 failed)" % (F["n_files"], F["n_files"] - 1) in out,
     "table: the file counts")
T.ok(all(h in out.splitlines() for h in ("formats", "years", "cameras", "models")), "table: the sections")

T.ok(qf.run("stats", "--format", "html", data=DM, model=None).returncode == 2, "--format html: usage error")
T.ok(qf.run("stats", "extra", data=DM, model=None).returncode == 2, "an argument: usage error")
p = qf.run("stats", data=os.path.join(tmp, "none"), model=None)
T.ok(p.returncode == 3 and b"clipdex index" in p.stderr, "no store: exit 3, says how to make one")

shutil.rmtree(tmp)
sys.exit(T.done())
