#!/usr/bin/python3
"""72-serve-load.t - `clipdex serve` under load on loopback while clipdexd
indexes: 32 clients (keep-alive connections) search for 20 s (at most
2000 requests each) while `clipdex index` (clipdexd --once) adds batches
of new photos to the same store.  Nothing may fail: every answer is a 200
with well-formed results; the server stays up; the photos committed
during the run are found at the end.  Queries/s and p50/p99 latency are
reported (as diagnostics: the machine is shared, so they are not pass or
fail).  CLIPDEX_LOAD_SECONDS / CLIPDEX_LOAD_CLIENTS override 20 / 32.
"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402
import serve_fixture as sf  # noqa: E402

SECONDS = float(os.environ.get("CLIPDEX_LOAD_SECONDS", "20"))
CLIENTS = int(os.environ.get("CLIPDEX_LOAD_CLIENTS", "32"))
MAX_PER_CLIENT = 2000
WORDS = ["a red car", "a dog on a beach", "mountains at sunset", "a bicycle", "two people at a wedding",
         "a cannon", "a green field", "snow", "a city street at night", "a cat on a sofa", "flowers", "the sea"]

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-72-")
F = qf.build(tmp)
D = F["data"]
S = sf.Server(D, cache=os.path.join(tmp, "cache"))
stop = threading.Event()
lat = []
failures = []
counts = [0] * CLIENTS
lock = threading.Lock()


def client(k):
    c = http.client.HTTPConnection("127.0.0.1", S.port, timeout=60)
    mine = []
    i = 0
    while not stop.is_set() and i < MAX_PER_CLIENT:
        qtext = "%s %d" % (WORDS[(k + i) % len(WORDS)], i % 7)
        path = "/api/search?" + urllib.parse.urlencode({"q": qtext, "n": 20})
        t0 = time.monotonic()
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            dt = time.monotonic() - t0
            ok = r.status == 200 and isinstance(json.loads(body.decode()).get("results"), list)
        except Exception as e:  # noqa: BLE001 - every failure counts
            ok, dt, body = False, 0, repr(e).encode()
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", S.port, timeout=60)
        if ok:
            mine.append(dt)
        else:
            with lock:
                failures.append(body[:200])
        i += 1
    c.close()
    with lock:
        lat.extend(mine)
        counts[k] = i


# the writer: new photos in batches, each committed by clipdexd --once
newdir = os.path.join(F["lib"], "incoming")
os.makedirs(newdir)
added = []
index_fail = []


def writer():
    b = 0
    while not stop.is_set() and b < 50:
        for j in range(3):
            p = os.path.join(newdir, "b%02d-%d.jpg" % (b, j))
            qf.scene(320, 240, 7000 + 10 * b + j).save(p, "JPEG", quality=85)
            added.append(p)
        r = qf.index(F["lib"], D)
        if r.returncode != 0:
            index_fail.append(r.stderr.decode(errors="replace")[-300:])
        b += 1


threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
w = threading.Thread(target=writer)
t0 = time.monotonic()
w.start()
for t in threads:
    t.start()
time.sleep(SECONDS)
stop.set()
for t in threads:
    t.join(120)
w.join(300)
elapsed = time.monotonic() - t0
n = len(lat)
lat.sort()
T.ok(not failures, "%d clients, %.0f s: no request failed (%d failures%s)" %
     (CLIENTS, SECONDS, len(failures), ", first: %r" % failures[0] if failures else ""))
T.ok(all(c > 0 for c in counts) and n == sum(counts), "every client was answered (%d requests)" % n)
if n:
    T.diag("load: %d requests in %.1f s = %.0f queries/s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms"
           % (n, elapsed, n / elapsed, 1000 * lat[n // 2], 1000 * lat[min(n - 1, int(n * 0.99))], 1000 * lat[-1]))
T.ok(not index_fail and len(added) >= 3, "clipdexd committed %d new photos during the run" % len(added))
st, j = sf.get_json(S.port, "/api/search?" + sf.q(q="a photo", n=200, under=newdir))
found = {r["path"] for r in j["results"]} if st == 200 else set()
T.ok(found == set(added), "the server finds every photo committed during the run (%d/%d)" % (len(found), len(added)))
T.ok(S.alive(), "the server is still running")
rc, err = S.stop()
T.ok(rc == 0, "and stops cleanly")
shutil.rmtree(tmp)
sys.exit(T.done())
