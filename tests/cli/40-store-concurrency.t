#!/usr/bin/python3
"""40-store-concurrency.t - readers querying in a loop while clipdexd
writes: the test adds, deletes, rewrites, renames and copies files in a
watched directory, and the daemon (save_every small, so readers also
replay the change log and map newly saved FAISS files) indexes them.
Two long-lived readers (tests/tools/store_reader.c) query with the stored
vectors of files that do not change: no reader ever gets an error or an
inconsistent answer (its own file not found, a score that does not match
the stored vector, its row changed).  `clipdex check` run during the
writes finds the store consistent; `check --repair` refuses while the
daemon holds the store; at the end the store holds exactly the files on
disk.  CONCURRENCY_SECONDS sets how long the tree is changed at least
(default 4); it goes on, up to 90 s, until the daemon has saved the FAISS
file, and only then are the readers told to stop (on a loaded machine the
daemon may take longer than that to index five new vectors).
"""
import os
import random
import signal
import subprocess
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402  (tests/cli/daemonlib.py)

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok
SECS = float(os.environ.get("CONCURRENCY_SECONDS", "4"))
READER = os.path.join(lib.BUILD, "tests", "tools", "store_reader")
rnd = random.Random(7)

tmp = lib.temp_dir("conc")
photos = os.path.join(tmp, "photos")
stable = os.path.join(photos, "stable")
churn = os.path.join(photos, "churn")
os.makedirs(stable)
os.makedirs(churn)
serial = [0]


def new_image(path):
    serial[0] += 1
    lib.write_file(path, lib.distinct_image("conc-%d" % serial[0]))


def faiss_ids():
    d = os.path.join(tmp, "data")
    return {(f, os.stat(os.path.join(d, f)).st_ino) for f in os.listdir(d) if f.endswith(".faiss")}


d = lib.Daemon(tmp, [photos])
try:
    for i in range(30):
        new_image(os.path.join(stable, "s%02d.jpg" % i))
    for i in range(20):
        new_image(os.path.join(churn, "c%03d.jpg" % i))
    ok(d.start(args=["--set", "store.save_every=5"]), "clipdexd starts")
    ok(lib.wait_for(lambda: lib.store_matches_disk(d.data, photos) == ""), "50 files indexed")

    faiss_before = faiss_ids()
    stop = os.path.join(tmp, "stop-readers")
    readers = [subprocess.Popen([READER, d.data, stable, "300", stop], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for _ in range(2)]
    t0 = time.monotonic()
    ops = 0
    check_rc = None
    check_out = ""
    while time.monotonic() - t0 < SECS or (faiss_ids() == faiss_before and time.monotonic() - t0 < 90):
        files = sorted(os.path.join(churn, f) for f in os.listdir(churn))
        op = rnd.randrange(5)
        if op == 0 or len(files) < 5:
            new_image(os.path.join(churn, "c%03d.jpg" % (1000 + serial[0])))
        elif op == 1:
            os.unlink(rnd.choice(files))
        elif op == 2:
            new_image(rnd.choice(files))                      # rewritten in place
        elif op == 3:
            p = rnd.choice(files)
            os.rename(p, os.path.join(churn, "r%03d.jpg" % serial[0]))
            serial[0] += 1
        else:
            with open(rnd.choice(files), "rb") as f:
                lib.write_file(os.path.join(churn, "k%03d.jpg" % serial[0]), f.read())
            serial[0] += 1
        ops += 1
        if check_rc is None and time.monotonic() - t0 > SECS / 3:
            # check is a reader too: it runs while the daemon writes.
            good, check_out = lib.check(d.data)
            check_rc = 0 if good else 1
        time.sleep(0.02)
    saved = faiss_ids() != faiss_before     # before the readers stop
    open(stop, "w").close()
    for i, r in enumerate(readers):
        _, err = r.communicate(timeout=lib.TIMEOUT)
        lines = err.decode(errors="replace").strip().splitlines()
        ok(r.returncode == 0, "reader %d: %s" % (i + 1, lines[-1] if lines else "no output"))
        if r.returncode != 0:
            tap.diag("\n".join(lines[-10:]))
    ok(check_rc == 0, "clipdex check during the writes: consistent")
    if check_rc:
        tap.diag(check_out)
    ok(lib.wait_for(lambda: lib.store_matches_disk(d.data, photos) == ""),
       "after %d changes to the tree the store holds exactly the files on disk" % ops)
    ok(saved, "the daemon saved the FAISS file while the readers ran")

    p = lib.run([lib.CLIPDEX, "check", "--repair", "--data", d.data])
    out = (p.stdout + p.stderr).decode(errors="replace")
    ok(p.returncode == 3 and "another writer" in out and "stop clipdexd" in out,
       "check --repair refuses while clipdexd holds the store (exit %d)" % p.returncode)
    tap.diag(out)
    rc, _ = d.stop()
    ok(rc == 0, "clipdexd stops")
    good, out = lib.check(d.data)
    ok(good, "consistent afterwards")
    if not good:
        tap.diag(out)
finally:
    if d.proc:
        d.stop(signal.SIGKILL)
    if tap.failed:
        tap.diag("daemon log (tail):\n" + d.log_text()[-3000:])
    lib.cleanup(tmp)

sys.exit(tap.done())
