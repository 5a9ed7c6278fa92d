#!/usr/bin/python3
"""40-store-powercut.t - the store's durability claims under simulated
power cuts, not just SIGKILL.

clipdexd --once indexes new photos into an existing store under
tests/tools/powercut.so (LD_PRELOAD), which writes out, for sync events
chosen at random, the store as a disk could hold it had the power failed
just then: what fsync/fdatasync made durable (file data at the file's
last sync, names at the directory's last sync), and of the rest either
nothing or a random part (names one by one, data page by page).  For each
such state, and for the one after the daemon exited (nothing unsynced):

  - `clipdex check` passes on it, before anything else touches it;
  - every file whose commit had returned before the cut is in it (the
    live database copied when the daemon's commit returned, compared with
    Python's sqlite3: committed means durable, synchronous = FULL);
  - everything the earlier, synced run indexed is still there;
  - for some of them, a writer opens it and an index run completes, after
    which the store holds exactly the files on disk (hashlib's SHA-256)
    and check passes.

The mutations "no fsync of the FAISS file" and "PRAGMA synchronous = OFF"
fail this test (the first leaves an empty FAISS file under a durable
name; the second loses returned commits).  POWERCUT_CUTS sets how many
cut states are checked (default 16, plus the final one).
"""
import os
import random
import shutil
import subprocess
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402  (tests/cli/daemonlib.py)

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok
PRELOAD = os.path.join(lib.BUILD, "tests", "tools", "powercut.so")
if not os.path.exists(PRELOAD):
    print("1..0 # SKIP missing %s (make tests-build)" % PRELOAD)
    sys.exit(0)
CUTS = int(os.environ.get("POWERCUT_CUTS", "16"))
SEED = int(os.environ.get("POWERCUT_SEED", "4242"))
rnd = random.Random(SEED)

tmp = lib.temp_dir("powercut")
photos = os.path.join(tmp, "photos")
data = os.path.join(tmp, "data")
os.makedirs(photos)
salt = [0]


def add_photos(n, sub):
    d = os.path.join(photos, sub)
    os.makedirs(d, exist_ok=True)
    names = ("photo420.jpg", "photo444.jpg")
    for i in range(n):
        salt[0] += 1
        lib.write_file(os.path.join(d, "p%03d.jpg" % i), lib.image_bytes(names[i % 2], salt="pc-%d" % salt[0]))


def once(data_dir, env=None, pass_fds=()):
    """clipdexd --once over photos into data_dir; (exit status, stderr)."""
    # save_every small: FAISS saves happen inside the run, not only at close.
    args = [lib.CLIPDEXD, "--once", "--model", lib.TINY, "--data", data_dir, "--batch", "4",
            "--set", "store.save_every=6", "-v", photos]
    p = subprocess.run(args, env=env, pass_fds=pass_fds, capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=lib.TIMEOUT * 3)
    return p.returncode, p.stderr.decode(errors="replace")


def files_of(d):
    """{path: hash} of the indexed rows of the database in d."""
    return {p: h for p, st, h in lib.store_rows(d) if st == 0}


def simulate(data, out, before, what):
    """Index photos into data under the simulator; check every cut state.
    before: {path: hash} that every state must hold (synced earlier)."""
    os.makedirs(out)
    phase_path = os.path.join(out, "phases")
    phase_fd = os.open(phase_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    env = dict(os.environ, LD_PRELOAD=PRELOAD, CDX_POWERCUT_DIR=data, CDX_POWERCUT_OUT=out,
               CDX_POWERCUT_KEEP=str(CUTS), CDX_POWERCUT_SEED=str(SEED),
               CLIPDEX_TEST_PHASE_FD=str(phase_fd),
               # a sanitizer build: the preloaded library comes before libasan
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    rc, err = once(data, env=env, pass_fds=(phase_fd,))
    os.close(phase_fd)
    ok(rc == 0, "%s: clipdexd --once under the power-cut simulator: exit 0" % what)
    if rc:
        tap.diag(err[-3000:])
    ok(lib.store_matches_disk(data, photos) == "", "%s: the live store holds exactly the files on disk" % what)

    with open(os.path.join(out, "syncs")) as f:
        syncs = [line.split() for line in f if not line.startswith("0 ")]
    kinds = {}
    for s in syncs:
        k = "directory" if s[2] == "dir" else s[2].split("-")[-1] if s[2].startswith("clipdex.db") \
            else "faiss" if ".faiss" in s[2] else s[2]
        kinds[k] = kinds.get(k, 0) + 1
    with open(phase_path) as f:
        n_commits = sum(1 for line in f if line.endswith(" commit end\n"))
    tap.diag("%s: %d sync events in the run (%s), %d commits returned" %
             (what, len(syncs), ", ".join("%s %d" % kv for kv in sorted(kinds.items())), n_commits))
    ok(kinds.get("faiss", 0) >= 2 and kinds.get("wal", 0) >= 5,
       "%s: the run synced the WAL and saved the FAISS file more than once" % what)

    cuts = sorted(d for d in os.listdir(out) if d.startswith("cut-") and not d.endswith(".committed"))
    n_mix = sum(1 for c in cuts if c.endswith("m"))
    ok("cut-final" in cuts and len(cuts) >= min(CUTS, len(syncs)) + 1,
       "%s: %d cut states written (%d at random sync events: %d losing all unsynced changes, %d a random "
       "part of them; and the final one)" % (what, len(cuts), len(cuts) - 1, len(cuts) - 1 - n_mix, n_mix))
    # Some of the states get a full recovery run (it costs a daemon start).
    recover = set(rnd.sample([c for c in cuts if c != "cut-final"], min(4, len(cuts) - 1))) | {"cut-final"}
    bad_check = []
    lost = []
    lost_old = []
    bad_recovery = []
    n_committed = 0
    no_store = 0
    for c in cuts:
        cd = os.path.join(out, c)
        cc = cd + ".committed"
        good, text = lib.check(cd)
        if not good and not os.path.isdir(cc) and "no index store" in text:
            no_store += 1  # cut before the database's name was durable: nothing had been committed
        elif not good:
            bad_check.append(c)
            tap.diag("%s: clipdex check:\n%s" % (c, text[-1500:]))
            continue
        have = files_of(cd) if good else {}
        gone = [p for p in before if have.get(p) != before[p]]
        if gone:
            lost_old.append(c)
            tap.diag("%s: %d rows of the synced store are gone, e.g. %s" % (c, len(gone), gone[:2]))
        if os.path.isdir(cc):
            committed = files_of(cc)
            n_committed += 1
            gone = [p for p in committed if have.get(p) != committed[p]]
            if gone:
                lost.append(c)
                tap.diag("%s: %d of %d committed rows are gone, e.g. %s" %
                         (c, len(gone), len(committed), gone[:2]))
        if c in recover:
            rc, err = once(cd)
            why = lib.store_matches_disk(cd, photos) if rc == 0 else "exit %d" % rc
            good, text = lib.check(cd)
            if why or not good:
                bad_recovery.append(c)
                tap.diag("%s: recovery run: %s\n%s\n%s" % (c, why or "check failed", err[-1500:], text[-1500:]))
    ok(not bad_check, "%s: clipdex check passes on every cut state (%d failed of %d; %d before the "
       "database existed)" % (what, len(bad_check), len(cuts), no_store))
    ok(not lost_old, "%s: no cut state lost a row the synced store had (%d did)" % (what, len(lost_old)))
    ok(n_committed >= len(cuts) // 2 and not lost,
       "%s: every commit that had returned is in the cut state (%d states with a returned commit, %d lost one)" %
       (what, n_committed, len(lost)))
    ok(not bad_recovery, "%s: %d states opened by a writer, indexed to completion: exactly the files on disk%s" %
       (what, len(recover), "" if not bad_recovery else " (%s failed)" % ", ".join(bad_recovery)))


try:
    # A store made and synced before the run under test: all of it durable.
    add_photos(12, "old")
    rc, err = once(data)
    ok(rc == 0, "a first run indexes 12 photos")
    if rc:
        tap.diag(err[-2000:])
    os.sync()
    before = files_of(data)
    ok(len(before) == 12, "12 rows before the run under test")

    # The run under test: new photos (rows are only added, so what one
    # commit wrote stays in every later state).
    add_photos(30, "new")
    simulate(data, os.path.join(tmp, "cuts"), before, "an existing store")

    # A store created under the simulator: its creation is cut too.
    fresh = os.path.join(tmp, "fresh")
    os.makedirs(fresh)
    os.sync()
    simulate(fresh, os.path.join(tmp, "cuts-fresh"), {}, "a new store")
finally:
    if tap.failed and os.environ.get("POWERCUT_KEEP_TMP"):
        tap.diag("left in %s" % tmp)
    else:
        lib.cleanup(tmp)

sys.exit(tap.done())
