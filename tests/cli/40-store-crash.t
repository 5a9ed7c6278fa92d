#!/usr/bin/python3
"""40-store-crash.t - the real daemon killed with SIGKILL in every phase of
its work; the store stays consistent and ends equal to the disk.

`clipdexd --once` indexes a tree of small images with the tiny model and
is killed with SIGKILL at a chosen moment, CRASH_KILLS times (default 30)
while it works; `clipdex check` must pass after every kill.  Between runs
the tree changes (new files, deletions, rewrites, renames, copies), so
every run scans, decodes, embeds, commits and removes, and saves the FAISS
file inside commits (save_every is small) and at close; every few runs
the test deletes or truncates the FAISS file, which the next run must
rebuild.

Aiming: the daemon writes its phase transitions to a pipe the test gives
it ($CLIPDEX_TEST_PHASE_FD, indexer/log.h).  An unkilled run measures how
often each phase runs and how long it takes; each kill then targets the
phase with the fewest kills so far: the test reads the pipe as the daemon
works and sends SIGKILL a random time (up to the phase's measured mean
duration) after a randomly chosen occurrence of that phase begins.  Where
a kill landed is read back from the killed run's own phase log (the
phases begun and not ended), and a FAISS save is recognised by the
temporary file it leaves.  No assertion depends on timing: the kills go on
until CRASH_KILLS landed mid-work and every phase was hit (or a cap of
3 x CRASH_KILLS runs is reached); the counts per phase are reported.

At the end an unkilled run completes, and the store must hold exactly the
image files on disk, each once, with the SHA-256 hashlib computes (read
with Python's sqlite3, not with clipdex).  Then a FAISS file truncated
while nobody runs: check reports it, the next writer rebuilds it.
"""
import os
import random
import select
import signal
import subprocess
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402  (tests/cli/daemonlib.py)

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok
WANT = int(os.environ.get("CRASH_KILLS", "30"))
rnd = random.Random(int(os.environ.get("CRASH_SEED", "4242")))
PHASES = ("scan", "decode", "embed", "commit", "remove", "faiss-save", "shutdown")

tmp = lib.temp_dir("crash")
photos = os.path.join(tmp, "photos")
data = os.path.join(tmp, "data")
os.makedirs(photos)
SOURCES = ("gray.jpg", "palette.png", "progressive.jpg")
serial = [0]


def new_file(name=None):
    """A new image (distinct content) under photos; its path."""
    serial[0] += 1
    src = SOURCES[serial[0] % len(SOURCES)]
    sub = os.path.join(photos, "d%d" % (serial[0] % 4))
    os.makedirs(sub, exist_ok=True)
    path = os.path.join(sub, name or "f%04d%s" % (serial[0], os.path.splitext(src)[1]))
    lib.write_file(path, lib.image_bytes(src, salt="crash-%d" % serial[0]))
    return path


def mutate():
    """Change the tree so that the next run has every kind of work."""
    files = sorted(lib.disk_images(photos))
    rnd.shuffle(files)
    for p in files[:3]:                      # deletions: removals
        os.unlink(p)
    for p in files[3:5]:                     # rewrites: new content, same name
        serial[0] += 1
        lib.write_file(p, lib.image_bytes(SOURCES[0], salt="rewrite-%d" % serial[0]))
    if len(files) > 6:                       # a rename and a copy: reused vectors
        os.rename(files[5], files[5] + ".moved.jpg")
        with open(files[6], "rb") as f:
            lib.write_file(files[6] + ".copy.jpg", f.read())
    for _ in range(5):                       # new files: decode, embed
        new_file()


def faiss_files():
    return sorted(os.path.join(data, f) for f in os.listdir(data) if f.endswith(".faiss")) \
        if os.path.isdir(data) else []


def tmp_sig():
    """Identity of FAISS temporary files (a save leaves one when killed)."""
    out = set()
    if os.path.isdir(data):
        for f in os.listdir(data):
            if f.endswith(".faiss.tmp"):
                st = os.stat(os.path.join(data, f))
                out.add((f, st.st_ino, st.st_mtime_ns, st.st_size))
    return out


def run(target=None, nth=1, delay_ms=0.0):
    """clipdexd --once.  With target, SIGKILL it delay_ms after the nth
    begin of phase target (or when it has logged its last begin of that
    phase, if it has fewer).  Returns (exit status, phase events
    [(ms from start, phase, begin)], stderr)."""
    r, w = os.pipe()
    env = dict(os.environ, CLIPDEX_TEST_PHASE_FD=str(w))
    args = [lib.CLIPDEXD, "--once", "--model", lib.TINY, "--data", data, "--batch", "4",
            "--set", "store.save_every=5", "-v", photos]
    errf = open(os.path.join(tmp, "run.log"), "wb")
    t0 = time.monotonic() * 1000.0
    p = subprocess.Popen(args, env=env, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    os.close(w)
    events = []
    buf = b""
    seen = 0
    kill_at = None
    deadline = time.monotonic() + lib.TIMEOUT * 3
    with os.fdopen(r, "rb", buffering=0) as f:
        while True:
            timeout = 1.0 if kill_at is None else max(0.0, (kill_at - time.monotonic() * 1000.0) / 1000.0)
            ready, _, _ = select.select([f], [], [], min(timeout, 1.0))
            if time.monotonic() > deadline and p.poll() is None:
                tap.diag("clipdexd --once still running after %.0f s: killed" % (lib.TIMEOUT * 3))
                p.send_signal(signal.SIGKILL)
            if kill_at is not None and time.monotonic() * 1000.0 >= kill_at:
                p.send_signal(signal.SIGKILL)
                kill_at = None
                target = None
            if not ready:
                continue
            chunk = f.read(65536)
            if not chunk:
                break  # the daemon is gone
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                ms, phase, what = line.decode().split()
                events.append((float(ms) - t0, phase, what == "begin"))
                if target and what == "begin" and phase == target and kill_at is None:
                    seen += 1
                    if seen == nth:
                        kill_at = time.monotonic() * 1000.0 + delay_ms
    rc = p.wait(timeout=lib.TIMEOUT * 3)
    errf.close()
    with open(os.path.join(tmp, "run.log"), "rb") as f:
        err = f.read().decode(errors="replace")
    return rc, events, err


def durations(events):
    """{phase: [ms]} of the phases that ended (the FAISS save at exit is
    the store's close, "close")."""
    open_at = {}
    out = {}
    for t, ph, begin in events:
        if begin:
            open_at.setdefault(ph, []).append(t)
        elif open_at.get(ph):
            out.setdefault(ph, []).append(t - open_at[ph].pop())
    return out


def active(events):
    """Phases begun and not ended when the log stops."""
    depth = {}
    for _, ph, begin in events:
        depth[ph] = depth.get(ph, 0) + (1 if begin else -1)
    return {("faiss-save" if ph == "close" else ph) for ph, n in depth.items() if n > 0}


try:
    for _ in range(40):
        new_file()
    rc, events, err = run()
    ok(rc == 0, "a first, unkilled run indexes 40 files")
    if rc:
        tap.diag(err[-2000:])
    measured = durations(events)
    counts = {ph: sum(1 for _, p, b in events if b and p == ph) for ph in measured}
    tap.diag("first run, phases (ms in total, times): " + ", ".join(
        "%s %.1f/%d" % (ph, sum(v), counts[ph]) for ph, v in sorted(measured.items())))

    hits = {ph: 0 for ph in PHASES}
    hits["elsewhere"] = 0
    mid = 0
    runs = 0
    check_fail = 0
    damaged = False
    unhealed = 0
    cap = WANT * 3
    while (mid < WANT or min(hits[ph] for ph in PHASES) == 0) and runs < cap:
        runs += 1
        mutate()
        if runs % 6 == 2:
            for f in faiss_files():
                os.unlink(f)
        elif runs % 6 == 5:
            for f in faiss_files():
                os.truncate(f, os.path.getsize(f) // 3)
                damaged = True
        target = min(PHASES, key=lambda ph: (hits[ph], rnd.random()))
        # The FAISS file is saved inside some commits and at close.
        ph = {"faiss-save": "close"}.get(target, target)
        times = measured.get(ph) or [5.0]
        nth = rnd.randint(1, max(1, counts.get(ph, 1)))
        delay = rnd.uniform(0.0, sum(times) / len(times))
        before = tmp_sig()
        rc, events, err = run(ph, nth, delay)
        for k, v in durations(events).items():
            measured[k] = v
        if rc == 0:  # a whole run: how many times each phase runs now
            counts = {k: sum(1 for _, p, b in events if b and p == k) for k in measured}
        if rc != -signal.SIGKILL:
            what = "the run had finished (exit %d)" % rc
        else:
            mid += 1
            landed = active(events)
            after = tmp_sig()
            if after - before:
                landed.add("faiss-save")
            for ph in landed:
                hits[ph] = hits.get(ph, 0) + 1
            if not landed:
                hits["elsewhere"] += 1
            what = "landed in %s" % (", ".join(sorted(landed)) or "no phase (start-up or between phases)")
        if any(ph == "scan" for _, ph, _ in events):
            damaged = False  # the run opened the store: it replaced or rebuilt the file
        good, text = lib.check(data)
        if not good:
            if damaged and "truncated" in text and "1 problem found" in text:
                unhealed += 1
                what += "; the FAISS file the test truncated is still there (killed before the store opened)"
            else:
                check_fail += 1
                what += "; CHECK FAILED"
                tap.diag(text[-2000:])
        tap.diag("run %d: aimed at %s (%.1f ms after its begin #%d): %s" % (runs, target, delay, nth, what))
    tap.diag("%d runs, %d killed mid-work; kills per phase: %s" %
             (runs, mid, ", ".join("%s %d" % (ph, hits[ph]) for ph in PHASES + ("elsewhere",))))
    ok(mid >= WANT, "at least %d SIGKILLs landed mid-work (%d in %d runs)" % (WANT, mid, runs))
    ok(check_fail == 0, "clipdex check passed after every kill (%d failures, %d reports of the test's own "
       "truncation before a run opened the store)" % (check_fail, unhealed))
    missed = [ph for ph in PHASES if hits[ph] == 0]
    ok(not missed, "kills landed in every phase%s" % (" (none in %s)" % ", ".join(missed) if missed else ""))

    rc, events, err = run()
    ok(rc == 0, "a final, unkilled run completes")
    if rc:
        tap.diag(err[-2000:])
    why = lib.store_matches_disk(data, photos)
    ok(why == "", "the store holds exactly the files on disk, each once, with their SHA-256%s" %
       (": " + why if why else ""))
    good, text = lib.check(data)
    ok(good, "clipdex check passes at the end")
    if not good:
        tap.diag(text)

    # A FAISS file damaged while nobody runs: check reports it, the next
    # writer rebuilds it.
    f = faiss_files()[0]
    os.truncate(f, 100)
    p = lib.run([lib.CLIPDEX, "check", "--data", data])
    ok(p.returncode == 1 and b"truncated" in p.stdout + p.stderr,
       "check reports a truncated FAISS file (exit %d)" % p.returncode)
    rc, events, err = run()
    ok(rc == 0 and "rebuilding it" in err, "the next writer opens anyway and rebuilds it")
    if rc or "rebuilding it" not in err:
        tap.diag(err[-2000:])
    good, text = lib.check(data)
    ok(good and lib.store_matches_disk(data, photos) == "", "consistent and equal to the disk again")
finally:
    lib.cleanup(tmp)

sys.exit(tap.done())
