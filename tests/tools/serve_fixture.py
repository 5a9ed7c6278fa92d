#!/usr/bin/python3
"""serve_fixture.py - what the `clipdex serve` tests (tests/cli/7x-serve*.t)
share: the query tests' library (query_fixture.py) plus files with hostile
names, indexed; a running server on 127.0.0.1 (an ephemeral port); HTTP on
loopback only; and an independent search oracle that reads the stored
float16 vectors straight from SQLite and ranks them with numpy.
"""
import atexit
import http.client
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import query_fixture as qf  # noqa: E402

# File names a page must show as text: markup, quotes, a newline, bytes
# that are not UTF-8 (os.fsencode'd names).
EVIL_NAMES = [
    b"<img src=x id=pwned onerror=alert(1)>.jpg",
    b"<script>alert('x')<script> \"quoted\" & 'single' &amp;.jpg",
    b"new\nline.jpg",
    b"latin1-\xe9t\xe9-\xff.jpg",
]


def build(root):
    """The library and store of query_fixture, plus lib/evil/ (hostile
    names, distinct pictures) indexed the same way."""
    F = qf.build(root)
    evil = os.path.join(F["lib"], "evil")
    os.makedirs(evil, exist_ok=True)
    F["evil"] = []
    for i, name in enumerate(EVIL_NAMES):
        p = os.path.join(os.fsencode(evil), name)
        buf = io.BytesIO()
        qf.scene(320, 240, 900 + i).save(buf, "JPEG", quality=85)
        with open(p, "wb") as f:
            f.write(buf.getvalue())
        F["evil"].append(os.fsdecode(p))
    p = qf.index(F["lib"], F["data"])
    if p.returncode != 0:
        raise SystemExit("serve fixture: indexing the hostile names failed: %s" % p.stderr.decode(errors="replace"))
    return F


class Server:
    """clipdex serve on 127.0.0.1:0; .port, .stop()."""

    def __init__(self, data, *extra, cache=None, model=qf.TINY, env=None):
        e = qf.clean_env()
        if cache:
            e["XDG_CACHE_HOME"] = cache
        if env:
            e.update(env)
        self.errf = open(os.path.join(os.path.dirname(data), "serve-%d.err" % time.monotonic_ns()), "w+b")
        args = [qf.CLIPDEX, "serve", "--data", data, "--listen", "127.0.0.1:0"]
        if model:
            args += ["--model", model]
        self.p = subprocess.Popen(args + list(extra), stdout=subprocess.PIPE, stderr=self.errf, env=e)
        line = self.p.stdout.readline().decode()
        if not line.startswith("clipdex serve: http://127.0.0.1:"):
            self.p.kill()
            self.errf.seek(0)
            raise SystemExit("serve fixture: the server did not start: %r %s" % (line, self.errf.read().decode()))
        self.port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        self.url = "http://127.0.0.1:%d" % self.port
        # a test that dies half-way must not leave its server running
        atexit.register(lambda p=self.p: p.poll() is None and p.kill())

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        """SIGTERM; returns (exit status, stderr)."""
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.errf.seek(0)
        err = self.errf.read()
        qf.sanitizer_check(subprocess.CompletedProcess([], self.p.returncode, b"", err), "clipdex serve")
        return self.p.returncode, err


def request(port, method, path, body=None, headers=None, timeout=60):
    """(status, headers dict (lower-case names), body bytes) on 127.0.0.1."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def get_json(port, path, **kw):
    st, h, b = request(port, "GET", path, **kw)
    try:
        return st, json.loads(b.decode())
    except ValueError:
        return st, None


def q(**params):
    return urllib.parse.urlencode(params, doseq=True)


# ---------------------------------------------------------------- oracle

class Oracle:
    """The store read with sqlite3 and numpy: rows and float16 vectors."""

    def __init__(self, data):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "clipdex.db"), uri=True)
        db.text_factory = bytes
        self.rows = {}
        for (fid, path, ext, size, w, h, taken, mtime_ns, make, model, state, vid, hsh) in db.execute(
                "SELECT id, path, ext, size, width, height, taken_at, mtime_ns, camera_make, camera_model, "
                "state, vector_id, hash FROM files"):
            self.rows[fid] = dict(id=fid, path=os.fsdecode(path), ext=(ext or b"").decode(), size=size, width=w,
                                  height=h, taken_at=taken, mtime=mtime_ns // 10**9 if mtime_ns else None,
                                  make=(make or b"").decode(errors="replace"),
                                  model=(model or b"").decode(errors="replace"), state=state, vector_id=vid,
                                  hash=hsh)
        self.vec = {}
        for vid, blob in db.execute("SELECT id, data FROM vectors"):
            self.vec[vid] = np.frombuffer(blob, dtype="<f2").astype(np.float64)
        self.marks = db.execute("SELECT count(*) FROM review_marks").fetchone()[0]
        self.mod_rows = db.execute("SELECT count(*) FROM moderation").fetchone()[0]
        db.close()

    def ok_files(self):
        return [r for r in self.rows.values() if r["state"] == 0 and r["vector_id"] in self.vec]

    def when(self, r):
        return r["taken_at"] if r["taken_at"] is not None else r["mtime"]

    def ranking(self, qv, keep=lambda r: True):
        """[(score, file id)] best first, over OK files passing keep."""
        qv = np.asarray(qv, dtype=np.float64)
        qv = qv / np.linalg.norm(qv)
        out = [(float(self.vec[r["vector_id"]] @ qv), r["id"]) for r in self.ok_files() if keep(r)]
        return sorted(out, key=lambda t: -t[0])


def embed_text(text, model=qf.TINY):
    """The text embedding through `clipdex embed` (its engine is checked
    against PyTorch by 10-embed.t)."""
    p = qf.run("embed", "--format", "json", "--text", text, model=model)
    rec = json.loads(p.stdout.decode().splitlines()[0])
    return np.array(rec["embedding"], dtype=np.float64)
