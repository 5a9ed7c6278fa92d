#!/usr/bin/python3
"""50-signals.t - clipdexd and signals.

SIGHUP reloads the configuration: a root added is scanned and watched, a
new exclude pattern removes what it matches, a root removed leaves the
index, a broken file keeps the old configuration.  SIGTERM in the middle
of indexing exits 0 within 5 seconds with a consistent store; SIGKILL at
several moments leaves a store that `clipdex check` passes, and a restart
finishes the work with every file indexed exactly once.
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

tmp = lib.temp_dir("signals")
A, B, C = (os.path.join(tmp, x) for x in "ABC")
for x in (A, B, C):
    os.makedirs(x)
d = lib.Daemon(tmp, [A])
store = d.store
salt = [0]


def new_image(path, name="photo420.jpg"):
    salt[0] += 1
    lib.write_file(path, lib.image_bytes(name, salt="sig-%d" % salt[0]))


def check_ok(what):
    good, out = lib.check(d.data)
    ok(good, "clipdex check passes " + what)
    if not good:
        tap.diag(out)


try:
    for i in range(3):
        new_image(os.path.join(A, "a%d.jpg" % i))
        new_image(os.path.join(B, "b%d.jpg" % i))
    new_image(os.path.join(A, "skip-me.jpg"))
    ok(d.start(), "clipdexd starts")
    a_files = {os.path.join(A, "a%d.jpg" % i) for i in range(3)} | {os.path.join(A, "skip-me.jpg")}
    b_files = {os.path.join(B, "b%d.jpg" % i) for i in range(3)}
    ok(wait_for(lambda: a_files <= store.ok_paths()), "root A indexed")
    ok(not (b_files & set(store.files())), "B is not a root yet")

    # SIGHUP: add root B and an exclude pattern.
    d.write_config([A, B], "[library]\nexclude = skip-*\n")
    d.send(signal.SIGHUP)
    ok(wait_for(lambda: b_files <= store.ok_paths()), "SIGHUP: the new root's files are indexed")
    ok(wait_for(lambda: os.path.join(A, "skip-me.jpg") not in store.files()),
       "SIGHUP: a new exclude pattern removes what it matches")
    new_image(os.path.join(B, "b-new.jpg"))
    ok(wait_for(lambda: os.path.join(B, "b-new.jpg") in store.ok_paths()), "the new root is watched")
    new_image(os.path.join(A, "skip-again.jpg"))
    new_image(os.path.join(A, "a-new.jpg"))
    ok(wait_for(lambda: os.path.join(A, "a-new.jpg") in store.ok_paths()), "the old root still is")
    ok(os.path.join(A, "skip-again.jpg") not in store.files(), "excluded files stay out")

    # A broken configuration: logged, the old one stays.
    with open(d.conf, "a") as f:
        f.write("[model]\nbatch = many\n")
    d.send(signal.SIGHUP)
    ok(wait_for(lambda: "old configuration stays in effect" in d.log_text()), "SIGHUP with a broken file: logged")
    new_image(os.path.join(B, "b-still.jpg"))
    ok(wait_for(lambda: os.path.join(B, "b-still.jpg") in store.ok_paths()) and d.alive(),
       "... and the daemon goes on with the old configuration")

    # SIGHUP: root A removed.
    d.write_config([B])
    d.send(signal.SIGHUP)
    ok(wait_for(lambda: not any(p.startswith(A + "/") for p in store.files())),
       "SIGHUP: a removed root's files leave the index")
    ok(wait_for(lambda: os.path.join(B, "b-still.jpg") in store.ok_paths()), "the remaining root keeps its files")
    new_image(os.path.join(A, "unwatched.jpg"))
    new_image(os.path.join(B, "b-last.jpg"))
    ok(wait_for(lambda: os.path.join(B, "b-last.jpg") in store.ok_paths()), "B still watched")
    ok(os.path.join(A, "unwatched.jpg") not in store.files(), "A no longer watched")

    # SIGTERM while busy.
    d.write_config([B, C])
    d.send(signal.SIGHUP)
    many = [os.path.join(C, "c%03d.jpg" % i) for i in range(150)]
    for p in many:
        new_image(p, "photo444.jpg")
    n0 = len(store.files())
    wait_for(lambda: len(store.files()) > n0, step=0.01)
    rc, secs = d.stop(signal.SIGTERM)
    n_done = len([p for p in many if p in store.files()])
    ok(rc == 0 and secs < 5.0, "SIGTERM while indexing (%d/150 done): exit 0 in %.2f s" % (n_done, secs))
    ok("stopping (SIGTERM)" in d.log_text(), "the stop is logged")
    check_ok("after SIGTERM")

    # SIGKILL at a few moments, each followed by check and a restart.
    more = [os.path.join(C, "k%03d.jpg" % i) for i in range(120)]
    for p in more:
        new_image(p, "photo444.jpg")
    target = set(many) | set(more)
    kills = 0
    for attempt in range(4):
        ok(d.start(), "restart %d" % (attempt + 1))
        have = len(target & store.ok_paths())
        if have == len(target):
            break
        # Let it make some progress, then kill it mid-work.
        wait_for(lambda: len(target & store.ok_paths()) >= have + 10, step=0.01)
        d.stop(signal.SIGKILL)
        kills += 1
        check_ok("after SIGKILL %d (%d/%d indexed)" % (kills, len(target & store.ok_paths()), len(target)))
        # Change the tree while it is down, so the next start has more to do.
        new_image(os.path.join(C, "while-down-%d.jpg" % attempt))
        target.add(os.path.join(C, "while-down-%d.jpg" % attempt))
    ok(kills >= 1, "killed mid-work %d times" % kills)
    if not d.alive():
        ok(d.start(), "final start")
    ok(wait_for(lambda: target <= store.ok_paths()), "after the kills every file gets indexed (%d)" % len(target))
    files = store.files()
    ok(len([p for p in files if p.startswith(C + "/")]) == len(target), "each file exactly once")
    ok(store.n_vectors() == len(store.distinct_vectors()), "no orphan vectors")
    rc, secs = d.stop()
    ok(rc == 0, "clean stop")
    check_ok("at the end")
finally:
    if d.proc:
        d.stop(signal.SIGKILL)
    if tap.failed:
        tap.diag("daemon log (tail):\n" + d.log_text()[-4000:])
    lib.cleanup(tmp)

sys.exit(tap.done())
