#!/usr/bin/python3
"""50-once.t - one-shot indexing: `clipdex index DIR` (clipdexd --once).

A tree of test images, a duplicate, the hostile corpus (truncated, empty,
mislabelled, huge, odd names, 50 directories deep) and a FIFO is indexed;
then the tree changes while no daemon runs (rename, directory move, a
copy to a new inode, deletion, a rewrite) and the next run must reconcile
it: renames and copies keep their vectors (no re-embedding), deleted files
leave, changed files are embedded again.  Also: a truncated file that is
later completed, progress output (plain lines without a terminal, a bar on
one), a model change re-embedding everything, and `clipdex check` after
every run.
"""
import os
import pty
import re
import select
import shutil
import subprocess
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemonlib as lib  # noqa: E402  (tests/cli/daemonlib.py)

tap = lib.Tap()
lib.need_prereqs(tap)
ok = tap.ok

tmp = lib.temp_dir("once")
root = os.path.join(tmp, "photos")
data = os.path.join(tmp, "data")
store = lib.Store(data)


def index(*dirs, model=lib.TINY):
    p = lib.run([lib.CLIPDEX, "index", "--model", model, "--data", data, "--"] + list(dirs))
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        tap.diag("clipdex index exited %d:\n%s" % (p.returncode, err[-3000:]))
    return p.returncode, err


def summary_counts(err):
    m = re.search(r"indexed in [0-9.]+ s: (\d+) embedded .*?(\d+) reused.*?(\d+) unchanged, (\d+) failed, "
                  r"(\d+) moved, (\d+) removed", err)
    if not m:
        return None
    return dict(zip(("embedded", "reused", "unchanged", "failed", "moved", "removed"), map(int, m.groups())))


def check_ok(what):
    good, out = lib.check(data)
    ok(good, "clipdex check passes " + what)
    if not good:
        tap.diag(out)


try:
    os.makedirs(os.path.join(root, "sub"))
    images = sorted(f for f in os.listdir(lib.IMAGES) if not f.startswith("."))
    for f in images:
        shutil.copy(os.path.join(lib.IMAGES, f), os.path.join(root, f))
    shutil.copy(os.path.join(lib.IMAGES, "photo420.jpg"), os.path.join(root, "sub", "copy.jpg"))
    lib.write_file(os.path.join(root, "notes.txt"), b"not an image")
    os.makedirs(os.path.join(root, ".cache"))
    shutil.copy(os.path.join(lib.IMAGES, "photo444.jpg"), os.path.join(root, ".cache", "hidden.jpg"))
    have_corpus = os.path.isdir(os.path.join(lib.CORPUS, "hostile"))
    if have_corpus:
        lib.copy_tree(os.path.join(lib.CORPUS, "hostile"), os.path.join(root, "hostile"))
    else:
        tap.diag("no corpus at %s: hostile files skipped" % lib.CORPUS)
    os.mkfifo(os.path.join(root, "pipe.jpg"))

    rc, err = index(root)
    ok(rc == 0, "clipdex index: exit 0 despite hostile files")
    ok("progress: " in err, "plain progress lines when stderr is not a terminal")
    s1 = summary_counts(err)
    ok(s1 is not None, "a summary line at the end")
    files = store.files()
    good = store.ok_paths()
    want = {os.path.join(root, f) for f in images} | {os.path.join(root, "sub", "copy.jpg")}
    ok(want <= good, "every test image is indexed (%d of %d)" % (len(want & good), len(want)))
    ok(files.get(os.path.join(root, "sub", "copy.jpg"), (0, -1))[1] ==
       files.get(os.path.join(root, "photo420.jpg"), (0, -2))[1], "an identical copy shares its vector")
    nv = store.n_vectors()
    ok(nv == len(store.distinct_vectors()), "one vector per distinct content (%d)" % nv)
    ok(s1 and s1["embedded"] == nv, "nothing was embedded twice (%s)" % s1)
    ok(not any(p.endswith((".txt", "hidden.jpg", "pipe.jpg")) for p in files),
       "non-images, hidden files and the FIFO are not indexed")
    if have_corpus:
        h = os.path.join(root, "hostile")
        errs = {p: v[2] for p, v in files.items() if v[0] == 1}
        for rel in ("empty/empty.jpg", "wrong-content/plain_text.jpg", "bad-crc/ihdr_crc_inverted.png",
                    "huge-dimensions/png_100000x100000_rgb8.png", "huge-dimensions/jpeg_65535x65535.jpg",
                    "truncated/trunc_png_00020_of_00145.png"):
            p = os.path.join(h, rel)
            ok(p in errs and errs[p], "hostile %s: recorded as failed (%s)" % (rel, errs.get(p)))
        deep = [p for p in files if p.endswith("/deep.jpg")]
        ok(deep and deep[0] in good, "a photo 50 directories deep is indexed")
        odd = [p for p in good if "/names/" in p]
        ok(len(odd) >= 5, "odd file names (space, newline, Latin-1, UTF-8, dash) indexed: %d" % len(odd))
        ok(not any(p.endswith("no_extension") for p in files), "a file without an image extension is skipped")
    st = lib.status(data)
    ok(st is not None and st["files"]["indexed"] == len(good) and st["files"]["failed"] == len(files) - len(good)
       and not st["running"] and st["state"] == "done",
       "clipdex status: counts, not running, state done")
    check_ok("after the first run")

    # A second run finds nothing to do.
    before = store.files()
    rc, err = index(root)
    s2 = summary_counts(err)
    ok(rc == 0 and s2 and s2["embedded"] == 0 and s2["unchanged"] == len(before),
       "second run: nothing embedded, every file unchanged (%s)" % s2)

    # Changes while nobody watches.
    vid = lambda p: before[os.path.join(root, p)][1]  # noqa: E731
    os.rename(os.path.join(root, "photo444.jpg"), os.path.join(root, "sub", "renamed444.jpg"))
    os.rename(os.path.join(root, "sub"), os.path.join(root, "sub2"))
    lib.write_file(os.path.join(root, "newcopy.jpg"), lib.read(os.path.join(root, "progressive.jpg")))
    os.unlink(os.path.join(root, "progressive.jpg"))   # moved "across file systems": new inode
    os.unlink(os.path.join(root, "gray.png"))
    with open(os.path.join(root, "wide1000x333.jpg"), "ab") as f:
        f.write(b"\0 changed bytes")
    rc, err = index(root)
    s3 = summary_counts(err)
    after = store.files()
    ok(rc == 0 and s3 is not None, "third run completes")
    ok(after.get(os.path.join(root, "sub2", "renamed444.jpg"), (0, None))[1] == vid("photo444.jpg"),
       "renamed and moved while down: same vector")
    ok(after.get(os.path.join(root, "sub2", "copy.jpg"), (0, None))[1] == vid("sub/copy.jpg"),
       "directory renamed while down: same vector")
    ok(after.get(os.path.join(root, "newcopy.jpg"), (0, None))[1] == vid("progressive.jpg"),
       "content moved to a new inode: its vector reused, not re-embedded")
    ok(os.path.join(root, "gray.png") not in after and os.path.join(root, "photo444.jpg") not in after and
       os.path.join(root, "progressive.jpg") not in after and
       not any(p.startswith(os.path.join(root, "sub") + "/") for p in after),
       "vanished paths are removed")
    ok(s3 and s3["embedded"] == 1, "only the rewritten file is embedded again (%s)" % s3)
    ok(not store.has_vector(vid("gray.png")) and not store.has_vector(vid("wide1000x333.jpg")) and
       store.n_vectors() == len(store.distinct_vectors()),
       "the vectors of the deleted and the rewritten file are gone, no orphans")
    check_ok("after reconciling changes")

    # A truncated file, completed later.
    full = lib.image_bytes("photo444.jpg", salt="late")
    late = os.path.join(root, "late.jpg")
    lib.write_file(late, full[: len(full) // 3])
    index(root)
    ok(store.files().get(late, (None,))[0] == 1, "a truncated file is recorded as failed")
    lib.write_file(late, full)
    index(root)
    ok(store.files().get(late, (None,))[0] == 0, "completed later, it is indexed")
    rc, err = index(root)
    s5 = summary_counts(err)
    ok(s5 and s5["embedded"] == 0, "failed files are not retried until they change")

    # The progress bar on a terminal.
    root2 = os.path.join(tmp, "more")
    os.makedirs(root2)
    for i in range(20):
        lib.write_file(os.path.join(root2, "p%02d.jpg" % i), lib.image_bytes("photo420.jpg", salt=i))
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(lib.CLIPDEXD, [lib.CLIPDEXD, "--once", "--model", lib.TINY, "--data", data, "-c", "/dev/null", root2])
    out = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], lib.TIMEOUT)
            if not r:
                break
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, wst = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    ok(os.WIFEXITED(wst) and os.WEXITSTATUS(wst) == 0, "clipdexd --once on a terminal: exit 0")
    ok("\r[" in text and "images/s" in text and "ETA" in text and "20/20 files" in text,
       "a progress bar (done/total, images/s, ETA) on a terminal")
    ok(all(os.path.join(root2, "p%02d.jpg" % i) in store.ok_paths() for i in range(20)),
       "indexing a second directory")
    ok(os.path.join(root, "sub2", "copy.jpg") in store.ok_paths(),
       "indexing one directory leaves the other's files alone")

    # Another model: a new vector space, everything embedded again.
    gelu = os.path.join(lib.TESTDATA, "models", "tiny-gelu")
    if os.path.isdir(gelu):
        n_ok = len(store.ok_paths())
        rc, err = index(root, root2, model=gelu)
        s6 = summary_counts(err)
        ok(rc == 0 and s6 and s6["embedded"] > 0 and s6["unchanged"] < n_ok,
           "a model change re-embeds the files (%s)" % s6)
        st = lib.status(data)
        ok(st and st["model"]["name"] == "tiny-gelu" and st["models"] == 2, "status shows the new model")
        check_ok("after the model change")
finally:
    lib.cleanup(tmp)

sys.exit(tap.done())
