"""daemonlib.py - helpers shared by the clipdexd tests (tests/cli/50-*.t).

Not a test itself (prove runs *.t only).  The tests import it:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import daemonlib as lib

What it gives: TAP output (ok/diag/done), a temporary tree, a Daemon that
starts clipdexd with a generated configuration and a log file, reads of the
store (sqlite3, read-only queries) and `wait_for(predicate, timeout)`:
every test waits on a condition with a deadline, never on a bare sleep,
so the tests hold on a loaded two-core machine.
"""
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLIPDEX_BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
CLIPDEXD = os.path.join(BUILD, "bin", "clipdexd")
CLIPDEX = os.path.join(BUILD, "bin", "clipdex")
TESTDATA = os.path.join(ROOT, "build", "testdata")
TINY = os.path.join(TESTDATA, "models", "tiny")
IMAGES = os.path.join(TESTDATA, "images")
SHARED = os.environ.get("CLIPDEX_SHARED", os.path.join(ROOT, "..", "shared"))
CORPUS = os.path.join(SHARED, "corpus")
# Generous: a loaded machine or a sanitizer build is slow; a pass is fast.
TIMEOUT = float(os.environ.get("CLIPDEX_TEST_TIMEOUT", "60"))


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, msg):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%sok %d - %s" % ("" if cond else "not ", self.n, msg), flush=True)
        return bool(cond)

    def diag(self, text):
        for line in str(text).splitlines():
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        return 1 if self.failed else 0


def wait_for(pred, timeout=TIMEOUT, step=0.05):
    """Poll pred() until it is true or timeout seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)
        step = min(step * 1.5, 0.5)


def make_writable(top):
    """The corpus is read-only: copies must be ours to change and delete."""
    for d, dirs, files in os.walk(top):
        os.chmod(d, 0o755)
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


def copy_tree(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    make_writable(dst)


def write_file(path, data, fsync=False):
    """Write (and close) a file: one IN_CLOSE_WRITE."""
    with open(path, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def image_bytes(name="photo420.jpg", salt=None):
    """A test image; with salt, bytes appended after the image data make a
    distinct file (different SHA-256) that decodes the same."""
    data = read(os.path.join(IMAGES, name))
    if salt is not None:
        data += b"\0clipdex-test-" + str(salt).encode()
    return data


def distinct_image(seed, fmt="JPEG"):
    """Bytes of a small image no other seed gives: blocks of random colour
    (copies of one test image with bytes appended decode alike, so their
    embeddings tie; these do not)."""
    import io
    import random as _random
    from PIL import Image
    r = _random.Random(seed)
    small = Image.new("RGB", (8, 8))
    small.putdata([(r.randrange(256), r.randrange(256), r.randrange(256)) for _ in range(64)])
    buf = io.BytesIO()
    small.resize((64, 64), Image.NEAREST).save(buf, fmt)
    return buf.getvalue()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, **kw)


class Store:
    """Read-only views of a store's database (clipdex.db)."""

    def __init__(self, data):
        self.data = data
        self.db = os.path.join(data, "clipdex.db")

    def _query(self, sql, args=()):
        if not os.path.exists(self.db):
            return []
        for _ in range(20):
            try:
                con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=5)
                try:
                    return con.execute(sql, args).fetchall()
                finally:
                    con.close()
            except sqlite3.OperationalError:
                time.sleep(0.05)  # the writer is checkpointing; try again
        return []

    def files(self):
        """{path (str, surrogate-escaped bytes): (state, vector_id, error)}"""
        rows = self._query("SELECT path, state, vector_id, error FROM files")
        out = {}
        for p, st, vid, err in rows:
            if isinstance(p, bytes):
                p = os.fsdecode(p)
            out[p] = (st, vid, err)
        return out

    def ok_paths(self):
        return {p for p, v in self.files().items() if v[0] == 0}

    def error_paths(self):
        return {p for p, v in self.files().items() if v[0] == 1}

    def n_vectors(self):
        r = self._query("SELECT count(*) FROM vectors")
        return r[0][0] if r else 0

    def has_vector(self, vid):
        return bool(self._query("SELECT count(*) FROM vectors WHERE id = ?", (vid,))[0][0])

    def distinct_vectors(self):
        """Vector ids referenced by indexed files."""
        return {v[1] for v in self.files().values() if v[0] == 0}

    def meta(self, key):
        r = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return r[0][0] if r else None


def status(data):
    p = run([CLIPDEX, "status", "--data", data, "--format", "json"])
    if p.returncode != 0:
        return None
    try:
        return json.loads(p.stdout)
    except ValueError:
        return None


def check(data):
    p = run([CLIPDEX, "check", "--data", data])
    return p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")


class Daemon:
    """clipdexd on a temporary store with the tiny model."""

    def __init__(self, tmp, roots, extra="", name="daemon"):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.conf = os.path.join(tmp, name + ".conf")
        self.log = os.path.join(tmp, name + ".log")
        self.store = Store(self.data)
        self.proc = None
        self.write_config(roots, extra)

    def write_config(self, roots, extra=""):
        lines = ["[library]"] + ["root = %s" % r for r in roots]
        lines += ["[model]", "dir = %s" % TINY, "batch = 8",
                  "[store]", "data_dir = %s" % self.data,
                  "[watch]", "debounce_ms = 100", "settle_ms = 1000", "root_poll = 1",
                  "[daemon]", "log_level = debug"]
        text = "\n".join(lines) + "\n" + extra
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self, wait=True, args=()):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([CLIPDEXD, "-c", self.conf] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        if wait:
            return self.wait_ready()
        return True

    def wait_ready(self, timeout=TIMEOUT):
        """Start-up walked the roots: the daemon says it is watching."""
        return wait_for(lambda: self.proc.poll() is None and "watching " in self.log_text(),
                        timeout)

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=TIMEOUT):
        """Send sig and wait; returns (exit status, seconds it took)."""
        if not self.proc:
            return None, 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.logf.close()
        self.proc = None
        return rc, time.monotonic() - t0

    def quiet(self, seconds=0.3):
        """No pending work: the status says nothing is queued (twice, some
        time apart, so a debounce in progress has surfaced)."""
        def idle():
            s = status(self.data)
            return s is not None and s["files"]["queued"] == 0 and s["state"] == "watching"
        if not wait_for(idle):
            return False
        time.sleep(seconds)
        return wait_for(idle)


# ---- independent oracles: the photo tree and a store's rows, read without
# clipdex (hashlib for content, Python's sqlite3 for the database) ----

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic", ".avif")


def disk_images(root):
    """{path: SHA-256 hex} of the image files under root (what an index of
    root must hold, each exactly once)."""
    import hashlib
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            if f.startswith(".") or not f.lower().endswith(IMAGE_EXTS):
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


def store_rows(data):
    """[(path, state, SHA-256 hex or None)] of every files row of the store
    in data, read with Python's sqlite3 (a list: duplicates must show)."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "clipdex.db"), uri=True, timeout=10)
    try:
        rows = con.execute("SELECT path, state, hex(hash) FROM files").fetchall()
    finally:
        con.close()
    return [(os.fsdecode(p) if isinstance(p, bytes) else p, st, h.lower() if h else None)
            for p, st, h in rows]


def store_matches_disk(data, root):
    """'' when the store's rows under root are exactly the images on disk
    (each once, indexed, with the content hash hashlib computes), else what
    differs."""
    want = disk_images(root)
    rows = [r for r in store_rows(data) if r[0].startswith(root.rstrip("/") + "/")]
    have = {}
    dup = [r[0] for r in rows if r[0] in have or have.setdefault(r[0], r) is None]
    why = []
    if dup:
        why.append("%d paths twice: %s" % (len(dup), dup[:3]))
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing:
        why.append("%d files not in the store: %s" % (len(missing), missing[:3]))
    if extra:
        why.append("%d rows for files not on disk: %s" % (len(extra), extra[:3]))
    bad = sorted(p for p in set(want) & set(have) if have[p][1] != 0 or have[p][2] != want[p])
    if bad:
        why.append("%d rows not indexed or with another hash: %s" % (len(bad), bad[:3]))
    return "; ".join(why)


def temp_dir(tag):
    return tempfile.mkdtemp(prefix="cdx-%s-" % tag)


def cleanup(tmp):
    make_writable(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def need_prereqs(tap):
    """Skip everything (exit 0 with a plan of 0) when the tiny model or the
    binaries are missing."""
    missing = [p for p in (CLIPDEXD, CLIPDEX, os.path.join(TINY, "config.json")) if not os.path.exists(p)]
    if missing:
        print("1..0 # SKIP missing %s (run make testdata)" % ", ".join(missing))
        sys.exit(0)
