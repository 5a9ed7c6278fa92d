#!/usr/bin/python3
"""50-watch.t - clipdexd watching a tree: real file operations, each
followed by a wait (with a deadline) for the store to show its effect.

copy in; atomic save (hidden temp + rename, and rename over an existing
file); mkdir -p of a tree with files; move within (no re-embedding);
directory rename (no re-embedding); move out; delete; a truncated file
completed later; a file written slowly while open; hostile files (logged,
recorded, the daemon goes on); a second instance refused; a root deleted
and recreated; `clipdex check` while the daemon runs, and after SIGTERM.
"""
import os
import shutil
import signal
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402  (tests/cli/daemonlib.py)

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok
wait_for = lib.wait_for

tmp = lib.temp_dir("watch")
A = os.path.join(tmp, "A")
outside = os.path.join(tmp, "outside")
os.makedirs(A)
os.makedirs(outside)
d = lib.Daemon(tmp, [A])
store = d.store
salt = [0]


def new_image(path, name="photo420.jpg"):
    """Write a distinct image (its own content hash) at path."""
    salt[0] += 1
    lib.write_file(path, lib.image_bytes(name, salt="watch-%d" % salt[0]))


def indexed(path):
    return wait_for(lambda: path in store.ok_paths())


def failed(path):
    return wait_for(lambda: store.files().get(path, (None,))[0] == 1)


def gone(path):
    return wait_for(lambda: path not in store.files())


def vid(path):
    return store.files().get(path, (None, None))[1]


try:
    new_image(os.path.join(A, "before.jpg"))
    ok(d.start(), "clipdexd starts and watches")
    ok(indexed(os.path.join(A, "before.jpg")), "a file present at start-up is indexed")

    p = lib.run([lib.CLIPDEXD, "-c", d.conf], timeout=lib.TIMEOUT)
    err = p.stderr.decode(errors="replace")
    ok(p.returncode == 3 and "another writer" in err and str(d.proc.pid) in err,
       "a second instance exits 3 naming the running one")
    if p.returncode != 3:
        tap.diag(err)

    # Copy in.
    src = os.path.join(tmp, "src.jpg")
    new_image(src)
    shutil.copy(src, os.path.join(A, "copied.jpg"))
    ok(indexed(os.path.join(A, "copied.jpg")), "copy in: indexed")

    # Atomic save: write a hidden temp, rename into place.
    tmpname = os.path.join(A, ".saved.jpg.tmp")
    new_image(tmpname)
    os.rename(tmpname, os.path.join(A, "saved.jpg"))
    ok(indexed(os.path.join(A, "saved.jpg")), "atomic save (temp + rename): indexed")
    old = vid(os.path.join(A, "saved.jpg"))
    tmpname = os.path.join(A, ".saved.jpg.tmp2")
    new_image(tmpname, "photo444.jpg")
    os.rename(tmpname, os.path.join(A, "saved.jpg"))
    ok(wait_for(lambda: vid(os.path.join(A, "saved.jpg")) not in (None, old)),
       "atomic replace of an indexed file: new content, new vector")
    ok(not any(".tmp" in p for p in store.files()), "temporary files are never indexed")

    # mkdir -p of a tree, files written right away at every level.
    deep = os.path.join(A, "t", "u", "v")
    os.makedirs(deep)
    tree = []
    for dd in (os.path.join(A, "t"), os.path.join(A, "t", "u"), deep):
        for i in range(3):
            p = os.path.join(dd, "f%d.jpg" % i)
            new_image(p)
            tree.append(p)
    ok(wait_for(lambda: set(tree) <= store.ok_paths()), "mkdir -p of a tree with files: all %d indexed" % len(tree))

    # Move within the tree: same vector.
    before = store.files()
    nvec = store.n_vectors()
    src, dst = os.path.join(deep, "f0.jpg"), os.path.join(A, "t", "moved.jpg")
    os.rename(src, dst)
    ok(wait_for(lambda: dst in store.ok_paths() and src not in store.files()), "move within: row moved")
    ok(vid(dst) == before[src][1] and store.n_vectors() == nvec, "move within: same vector, no re-embedding")

    # Directory rename: every row follows, same vectors.
    os.rename(os.path.join(A, "t"), os.path.join(A, "t2"))
    moved = {p.replace(os.path.join(A, "t") + "/", os.path.join(A, "t2") + "/", 1): v
             for p, v in store.files().items() if p.startswith(os.path.join(A, "t") + "/")}
    ok(wait_for(lambda: all(vid(p) == v[1] for p, v in moved.items()) and
                not any(p.startswith(os.path.join(A, "t") + "/") for p in store.files())),
       "directory rename: %d rows renamed, same vectors" % len(moved))
    ok(store.n_vectors() == nvec, "directory rename: no re-embedding")
    # ... and the renamed directory is still watched under its new name.
    p = os.path.join(A, "t2", "u", "after-rename.jpg")
    new_image(p)
    ok(indexed(p), "a file created in a renamed directory is indexed under the new path")

    # Move out of the tree, delete.
    src = os.path.join(A, "t2", "u", "f1.jpg")
    os.rename(src, os.path.join(outside, "f1.jpg"))
    ok(gone(src), "move out of the tree: removed")
    os.unlink(os.path.join(A, "saved.jpg"))
    ok(gone(os.path.join(A, "saved.jpg")), "delete: removed")
    shutil.rmtree(os.path.join(A, "t2", "u", "v"))
    ok(wait_for(lambda: not any("/t2/u/v/" in p for p in store.files())), "a deleted directory's files are removed")
    # A directory moved in from outside.
    ext = os.path.join(outside, "incoming")
    os.makedirs(os.path.join(ext, "sub"))
    new_image(os.path.join(ext, "sub", "in.jpg"))
    os.rename(ext, os.path.join(A, "incoming"))
    ok(indexed(os.path.join(A, "incoming", "sub", "in.jpg")), "a directory moved in: its files are indexed")

    # A truncated file, completed later.
    salt[0] += 1
    full = lib.image_bytes("photo444.jpg", salt=salt[0])
    late = os.path.join(A, "late.jpg")
    lib.write_file(late, full[: len(full) // 3])
    ok(failed(late), "a truncated file is recorded as failed")
    lib.write_file(late, full)
    ok(indexed(late), "completed later: indexed")

    # A file written slowly while it stays open: looked at once closed.
    salt[0] += 1
    data = lib.image_bytes("photo420.jpg", salt=salt[0])
    slow = os.path.join(A, "slow.jpg")
    with open(slow, "wb") as f:
        step = len(data) // 5 + 1
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(0.15)
    ok(indexed(slow), "a file written slowly while open is indexed once complete")

    # Hostile files: logged, recorded, and the daemon goes on.
    hostile = os.path.join(lib.CORPUS, "hostile")
    if os.path.isdir(hostile):
        for sub in ("empty", "wrong-content", "truncated", "bad-crc", "huge-dimensions", "exif", "names"):
            lib.copy_tree(os.path.join(hostile, sub), os.path.join(A, "hostile-" + sub))
        empty = os.path.join(A, "hostile-empty", "empty.jpg")
        trunc = os.path.join(A, "hostile-truncated", "trunc_jpeg_00623_of_05770.jpg")
        huge = os.path.join(A, "hostile-huge-dimensions", "png_100000x100000_rgb8.png")
        ok(failed(empty) and failed(trunc) and failed(huge), "hostile files are recorded as failed")
        ok(d.alive(), "the daemon survives the hostile corpus")
        errs = {p: v[2] for p, v in store.files().items() if v[0] == 1}
        ok(all(errs.get(p) for p in (empty, trunc, huge)), "each failure keeps its reason")
        ok(os.path.basename(trunc) in d.log_text(), "failures are logged")
        st = lib.status(d.data)
        ok(st and st["last_error"], "clipdex status shows the last error")
    after = os.path.join(A, "after-hostile.jpg")
    new_image(after)
    ok(indexed(after), "a good file after them is indexed")

    # Readers while the daemon runs: check is consistent.
    ok(d.quiet(), "the daemon goes idle")
    good, out = lib.check(d.data)
    ok(good, "clipdex check passes while the daemon runs")
    if not good:
        tap.diag(out)
    st = lib.status(d.data)
    ok(st and st["running"] and st["pid"] == d.proc.pid and st["state"] == "watching" and
       st["files"]["indexed"] == len(store.ok_paths()), "clipdex status: running, watching, counts")

    # A root deleted and recreated.
    n_before = len(store.files())
    shutil.rmtree(A)
    ok(wait_for(lambda: not store.files()), "root deleted: its %d files leave the index" % n_before)
    ok(wait_for(lambda: "was deleted or moved away" in d.log_text()), "root deletion is logged")
    os.makedirs(A)
    back = os.path.join(A, "back.jpg")
    new_image(back)
    ok(indexed(back), "root recreated: indexed again")
    p = os.path.join(A, "back2.jpg")
    new_image(p)
    ok(indexed(p), "and watched again")

    rc, secs = d.stop()
    ok(rc == 0 and secs < 5, "SIGTERM: exit 0 in %.2f s" % secs)
    st = lib.status(d.data)
    ok(st and not st["running"] and st["state"] == "stopped", "status after stop: not running, stopped")
    good, out = lib.check(d.data)
    ok(good, "clipdex check passes after the daemon stopped")
    if not good:
        tap.diag(out)
finally:
    if d.proc:
        d.stop(signal.SIGKILL)
    if tap.failed:
        tap.diag("daemon log (tail):\n" + d.log_text()[-4000:])
    lib.cleanup(tmp)

sys.exit(tap.done())
