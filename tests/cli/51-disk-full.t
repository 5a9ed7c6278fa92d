#!/usr/bin/python3
"""51-disk-full.t - indexing onto a file system that fills up.

The store lives on a small tmpfs (mounting one needs root: without it the
test skips, saying so).  After a first index with room to spare, a filler
file leaves the tmpfs almost full and new photos arrive:

- `clipdex index` must not report success: it exits 3 and says how many
  files were not stored, and that number is exactly what the database
  (read with sqlite3 once there is room again) lacks;
- a running clipdexd on the full store keeps going: `clipdex status`
  shows the problem, and once the filler is deleted the daemon stores
  every photo by itself (no restart), and the problem clears.

Waits are on conditions with deadlines, never on bare sleeps."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok

tmp = lib.temp_dir("diskfull")
mnt = os.path.join(tmp, "mnt")
os.makedirs(mnt)
p = lib.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt])
if p.returncode != 0:
    shutil.rmtree(tmp)
    print("1..0 # SKIP cannot mount a tmpfs (needs root): %s" % p.stderr.decode(errors="replace").strip())
    sys.exit(0)

photos = os.path.join(tmp, "photos")     # not on the tmpfs: only the store fills up
data = os.path.join(mnt, "data")
filler = os.path.join(mnt, "filler")
store = lib.Store(data)


def make_photos(lo, hi):
    os.makedirs(photos, exist_ok=True)
    for i in range(lo, hi):
        rng = np.random.default_rng(1000 + i)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            os.path.join(photos, "p%03d.png" % i))


def fill(leave):
    """Leave about `leave` bytes free on the tmpfs."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave))


def index():
    return lib.run([lib.CLIPDEX, "index", "--model", lib.TINY, "--data", data, photos])


try:
    make_photos(0, 20)
    p = index()
    ok(p.returncode == 0 and len(store.ok_paths()) == 20, "20 photos indexed with room to spare")

    # ---- one-shot indexing onto a full disk
    make_photos(20, 60)
    fill(48 * 1024)
    p = index()
    err = p.stderr.decode(errors="replace")
    m = re.search(r"(\d+) files were not stored: (.*)", err)
    ok(p.returncode == 3, "clipdex index on a full store: exit 3, not success (exit %d)" % p.returncode)
    ok(m is not None and "full" in m.group(2), "it says how many files were not stored, and why: %s"
       % (m.group(0) if m else err[-400:]))
    os.remove(filler)
    unstored = int(m.group(1)) if m else -1
    stored = store.ok_paths()
    ok(unstored > 0 and len(stored) == 60 - unstored,
       "exactly those are missing from the database (%d stored, %d reported not stored)"
       % (len(stored), unstored))
    ok(all(os.path.dirname(s) == photos for s in stored), "what is stored is the photos'")

    # ---- the daemon on a full disk retries by itself once there is room
    make_photos(60, 80)
    d = lib.Daemon(tmp, [photos])
    d.write_config([photos])
    with open(d.conf) as f:
        conf = f.read().replace("data_dir = %s" % d.data, "data_dir = %s" % data)
    with open(d.conf, "w") as f:
        f.write(conf)
    fill(48 * 1024)
    ok(d.start(wait=False), "clipdexd started on the full store")

    def problem():
        s = lib.status(data)
        return s.get("problem") if s else None
    ok(lib.wait_for(lambda: problem() is not None and "full" in problem()),
       "clipdex status shows the problem: %s" % problem())
    ok(d.alive(), "the daemon keeps running")
    os.remove(filler)
    ok(lib.wait_for(lambda: len(store.ok_paths()) == 80, timeout=lib.TIMEOUT + 60),
       "once there is room, every photo is stored without a restart (%d of 80)" % len(store.ok_paths()))
    ok(lib.wait_for(lambda: problem() is None), "the problem clears from clipdex status")
    rc, _ = d.stop()
    ok(rc == 0, "the daemon stops cleanly (exit %s)" % rc)
    good, out = lib.check(data)
    ok(good, "clipdex check passes afterwards")
    if not good:
        tap.diag(out[-2000:])
    if tap.failed:
        tap.diag(d.log_text()[-3000:])
finally:
    subprocess.run(["umount", mnt])
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(tap.done())
