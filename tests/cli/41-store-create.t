#!/usr/bin/python3
"""41-store-create.t - a reader that opens the store while a writer is
creating it (writer.lock held, clipdex.db still at schema version 0, as
between a fresh daemon's open and its first commit) reads an empty store;
it once failed with "the store has schema version 0 ... a writer (an
older clipdexd?) is running: restart it".  The lock is held by this
script (flock, as clipdex's writers take it), so no timing is involved.
An older schema under a running writer is still refused."""
import fcntl
import glob
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-41-")
latest = max(int(re.match(r"(\d+)_", os.path.basename(p)).group(1))
             for p in glob.glob(os.path.join(qf.ROOT, "schema", "[0-9]*.sql")))


def creating(d):
    """d as a writer leaves it between opening and migrating."""
    os.makedirs(d)
    lock = open(os.path.join(d, "writer.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    db = sqlite3.connect(os.path.join(d, "clipdex.db"))
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    return lock


d = os.path.join(tmp, "new")
lock = creating(d)
p = qf.run("stats", "--format", "json", data=d, model=None)
T.ok(p.returncode == 0, "stats while the writer creates the store: exit 0 (%s)" % p.stderr.decode().strip())
s = json.loads(p.stdout) if p.returncode == 0 else {}
T.ok(s.get("files") == 0 and s.get("vectors") == 0, "an empty store: 0 files, 0 vectors")
db = sqlite3.connect(os.path.join(d, "clipdex.db"))
T.ok(db.execute("PRAGMA user_version").fetchone()[0] == latest, "the schema is created (version %d)" % latest)
db.close()
p = qf.run("search", "anything", data=d)
T.ok(b"schema version" not in p.stderr and b"no vectors" in p.stderr, "search while the writer creates the "
     "store: an empty store, no restart (exit %d: %s)" % (p.returncode, p.stderr.decode().strip()))
lock.close()

# An existing store at an older version with a writer running: refused.
d = os.path.join(tmp, "old")
lock = creating(d)
db = sqlite3.connect(os.path.join(d, "clipdex.db"))
db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value)")
db.execute("PRAGMA user_version = 1")
db.commit()
db.close()
p = qf.run("stats", data=d, model=None)
T.ok(p.returncode != 0 and b"a writer" in p.stderr, "an older schema under a running writer: refused (%s)"
     % p.stderr.decode().strip())
lock.close()
shutil.rmtree(tmp)
sys.exit(T.done())
