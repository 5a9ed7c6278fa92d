#!/usr/bin/python3
"""42-store-repair.t - a damaged clipdex.db does not cost a full
re-embedding.

clipdex index (and clipdexd, once idle) keep DIR/clipdex.db.backup.  Pages
of the database are then overwritten (the damage is confirmed with
Python's sqlite3, the oracle for "damaged" and "sound"), the photos change
(one deleted, one copied, two new), and:

- search and check fail (exit 3) pointing at `clipdex check --repair`, not
  at indexing again;
- `clipdex check --repair` restores the backup (the damaged file kept
  aside) and the store is sound again;
- the next `clipdex index` embeds exactly the two new photos (the copy
  reuses its vector, the deleted one leaves), and search finds every photo
  on disk;
- without a backup, repair says so;
- a running clipdexd writes the backup by itself once idle.
"""
import json
import os
import re
import shutil
import sqlite3
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok

tmp = lib.temp_dir("repair")
photos = os.path.join(tmp, "photos")
data = os.path.join(tmp, "data")
db = os.path.join(data, "clipdex.db")
backup = db + ".backup"


def photo(name, seed):
    os.makedirs(photos, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(os.path.join(photos, name))


def sound(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False
    finally:
        con.close()


def damage(path):
    """Overwrite pages in the middle third of the file (not page 1)."""
    size = os.path.getsize(path)
    pages = size // 4096
    with open(path, "r+b") as f:
        for pg in range(pages // 3, 2 * pages // 3, 2):
            f.seek(pg * 4096)
            f.write(b"\xa5" * 4096)


def clipdex(*args):
    return lib.run([lib.CLIPDEX] + list(args))


def index():
    p = clipdex("index", "--model", lib.TINY, "--data", data, photos)
    m = re.search(rb"(\d+) embedded", p.stderr)
    return p.returncode, int(m.group(1)) if m else -1


for i in range(60):
    photo("p%02d.png" % i, i)
rc, n = index()
ok(rc == 0 and n == 60, "60 photos indexed (exit %d, %d embedded)" % (rc, n))
ok(os.path.exists(backup) and sound(backup), "clipdex index left a sound database backup")

damage(db)
ok(not sound(db), "pages of clipdex.db overwritten: sqlite3 finds it damaged")
p = clipdex("search", "--data", data, "--model", lib.TINY, "anything")
err = p.stderr.decode(errors="replace")
ok(p.returncode == 3 and "check --repair" in err and "index the photos" not in err,
   "search: exit 3, points at 'clipdex check --repair': %s" % err.strip()[-300:])
p = clipdex("check", "--data", data)
ok(p.returncode != 0, "check finds the damage (exit %d)" % p.returncode)

os.remove(os.path.join(photos, "p03.png"))
shutil.copy(os.path.join(photos, "p01.png"), os.path.join(photos, "copy01.png"))
photo("new1.png", 1001)
photo("new2.png", 1002)

p = clipdex("check", "--repair", "--data", data)
out = (p.stdout + p.stderr).decode(errors="replace")
ok(p.returncode == 0 and "restored the database from its backup" in out,
   "check --repair restores the backup (exit %d): %s" % (p.returncode, out.strip()[-400:]))
ok(sound(db), "the database is sound again")
ok(os.path.exists(os.path.join(data, "clipdex.db.damaged")), "the damaged database is kept aside")

rc, n = index()
ok(rc == 0 and n == 2, "the next index embeds only the 2 new photos (exit %d, %d embedded)" % (rc, n))
p = clipdex("check", "--data", data)
ok(p.returncode == 0, "check: consistent")
p = clipdex("search", "--data", data, "--model", lib.TINY, "-n", "1000", "--format", "json", "anything")
got = sorted(os.path.basename(json.loads(l)["path"]) for l in p.stdout.decode().splitlines())
ok(got == sorted(os.listdir(photos)), "search finds exactly the photos on disk (%d)" % len(got))

# without a backup there is nothing to restore, and repair says so
os.remove(backup)
damage(db)
p = clipdex("check", "--repair", "--data", data)
err = p.stderr.decode(errors="replace")
ok(p.returncode == 3 and "no backup" in err, "no backup: repair says so (exit %d): %s"
   % (p.returncode, err.strip()[-200:]))

# the daemon keeps a backup by itself
shutil.rmtree(data)
d = lib.Daemon(tmp, [photos])
ok(d.start(), "clipdexd started on a new store")
ok(lib.wait_for(lambda: os.path.exists(backup) and sound(backup)), "once idle, clipdexd wrote a sound backup")
con = sqlite3.connect("file:%s?mode=ro" % backup, uri=True)
n = con.execute("SELECT count(*) FROM files").fetchone()[0]
con.close()
ok(n == len(os.listdir(photos)), "the backup holds every photo (%d)" % n)
rc, _ = d.stop()
ok(rc == 0, "the daemon stops cleanly")
if tap.failed:
    tap.diag(d.log_text()[-2000:])
shutil.rmtree(tmp, ignore_errors=True)
sys.exit(tap.done())
