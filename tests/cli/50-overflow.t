#!/usr/bin/python3
"""50-overflow.t - when inotify cannot keep up.

Queue overflow: the daemon is stopped (SIGSTOP) while more events than
fs.inotify.max_queued_events are generated, then an image is added whose
event is certainly lost; after SIGCONT the daemon must see IN_Q_OVERFLOW,
rescan, and index the image.  (Lowering max_queued_events instead would
change a system-wide setting under everyone else's feet.)

Watch limit: with [watch] max_watches below the number of directories
(the same code path as the kernel's ENOSPC at fs.inotify.max_user_watches)
the daemon warns, keeps the rest unwatched, and finds new files there by
periodic rescans ([watch] rescan_interval).
"""
import os
import signal
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402  (tests/cli/daemonlib.py)

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok
wait_for = lib.wait_for

tmp = lib.temp_dir("overflow")
salt = [0]


def new_image(path):
    salt[0] += 1
    lib.write_file(path, lib.image_bytes("photo420.jpg", salt="ovf-%d" % salt[0]))


d = d2 = None
try:
    # ---- queue overflow ----
    A = os.path.join(tmp, "A")
    flood = os.path.join(A, "flood")
    os.makedirs(flood)
    d = lib.Daemon(tmp, [A])
    ok(d.start(), "clipdexd starts")
    first = os.path.join(A, "first.jpg")
    new_image(first)
    ok(wait_for(lambda: first in d.store.ok_paths()), "a first file is indexed")
    try:
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            qmax = int(f.read())
    except (OSError, ValueError):
        qmax = 16384
    # Each file written makes IN_CREATE, IN_MODIFY and IN_CLOSE_WRITE.
    n = qmax // 3 + 500
    if n > 200000:
        tap.diag("max_queued_events is %d: too many files to overflow it; skipped" % qmax)
    else:
        d.send(signal.SIGSTOP)
        try:
            for i in range(n):
                with open(os.path.join(flood, "f%06d.txt" % i), "wb") as f:
                    f.write(b"x")
            lost = os.path.join(flood, "after-overflow.jpg")
            new_image(lost)
        finally:
            d.send(signal.SIGCONT)
        ok(wait_for(lambda: "inotify queue overflowed" in d.log_text()),
           "IN_Q_OVERFLOW after %d events is noticed and logged" % (3 * n))
        ok(wait_for(lambda: lost in d.store.ok_paths()), "the rescan finds the file whose event was lost")
        ok(not any(p.endswith(".txt") for p in d.store.files()), "the flood of non-images is not indexed")
        later = os.path.join(A, "later.jpg")
        new_image(later)
        ok(wait_for(lambda: later in d.store.ok_paths()), "watching goes on after the overflow")
    rc, secs = d.stop()
    ok(rc == 0, "clean stop")

    # ---- watch limit ----
    tmp2 = os.path.join(tmp, "limit")
    R = os.path.join(tmp2, "R")
    dirs = [R] + [os.path.join(R, "d%d" % i) for i in range(4)] + [os.path.join(R, "d0", "deep")]
    for x in dirs:
        os.makedirs(x, exist_ok=True)
        new_image(os.path.join(x, "start.jpg"))
    d2 = lib.Daemon(tmp2, [R], "[watch]\nmax_watches = 2\nrescan_interval = 1\n")
    ok(d2.start(), "clipdexd starts with max_watches = 2 and %d directories" % len(dirs))
    ok(wait_for(lambda: "watch limit reached" in d2.log_text()), "the watch limit is reported clearly")
    starts = {os.path.join(x, "start.jpg") for x in dirs}
    ok(wait_for(lambda: starts <= d2.store.ok_paths()), "every directory is indexed at start-up")
    st = wait_for(lambda: (lambda s: s if s and s["unwatched"] > 0 else None)(lib.status(d2.data)))
    ok(st and st["watches"] == 2 and st["unwatched"] >= 1,
       "status: 2 watched, %s unwatched" % (st and st["unwatched"]))
    news = set()
    for x in dirs:
        p = os.path.join(x, "new.jpg")
        new_image(p)
        news.add(p)
    ok(wait_for(lambda: news <= d2.store.ok_paths()),
       "new files in watched and unwatched directories are all indexed (rescans)")
    gone = os.path.join(dirs[-1], "start.jpg")
    os.unlink(gone)
    ok(wait_for(lambda: gone not in d2.store.files()), "deletions in unwatched directories are found too")
    rc, secs = d2.stop()
    ok(rc == 0, "clean stop")
    good, out = lib.check(d2.data)
    ok(good, "clipdex check passes")
    if not good:
        tap.diag(out)
finally:
    for x in (d, d2):
        if x and x.proc:
            x.send(signal.SIGCONT)
            x.stop(signal.SIGKILL)
    if tap.failed:
        for x in (d, d2):
            if x:
                tap.diag("log (tail):\n" + x.log_text()[-3000:])
    lib.cleanup(tmp)

sys.exit(tap.done())
