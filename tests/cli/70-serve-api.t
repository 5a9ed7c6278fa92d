#!/usr/bin/python3
"""70-serve-api.t - `clipdex serve`'s JSON API on 127.0.0.1, against the
query tests' library plus files with hostile names.

Search results are checked against an independent oracle: the stored
float16 vectors read from SQLite and ranked with numpy (serve_fixture.py),
with filters evaluated in Python over the same rows.  Every endpoint and
every error path; path traversal, symlinks swapped in for indexed files
and directories; tokens; oversized and malformed requests; clients that
hang up mid-response; a writer committing new photos while the server
runs.  Nothing leaves loopback.
"""
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402
import serve_fixture as sf  # noqa: E402
from PIL import Image  # noqa: E402
import numpy as np  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-70-")
F = sf.build(tmp)
D = F["data"]
O = sf.Oracle(D)
cache = os.path.join(tmp, "cache")
S = sf.Server(D, cache=cache)
port = S.port
T.diag("serving on %s" % S.url)


def get(path, **kw):
    return sf.request(port, "GET", path, **kw)


def gj(path, **kw):
    return sf.get_json(port, path, **kw)


def is_json_error(st, h, b, want):
    try:
        j = json.loads(b.decode())
    except ValueError:
        return False
    return st == want and h.get("content-type", "").startswith("application/json") and isinstance(j.get("error"), str)


def close(a, b, tol=2e-3):
    return abs(a - b) <= tol


# ---- usage
p = qf.run("serve", "--listen", "nonsense", data=D)
T.ok(p.returncode == 2 and b"--listen" in p.stderr, "bad --listen: usage error")
p = qf.run("serve", "--token", "short", data=D)
T.ok(p.returncode == 2 and b"--token" in p.stderr, "a short token: usage error")
p = qf.run("serve", "-h")
T.ok(p.returncode == 0 and b"clipdex serve" in p.stdout, "serve -h prints the usage")

# ---- status
st, j = gj("/api/status")
T.ok(st == 200 and j["files"] == len(O.rows) and j["indexed"] == len(O.ok_files()),
     "status: files and indexed counts as in the database (%s)" % (j and (j["files"], j["indexed"]),))

# ---- search against the oracle
qtext = "a red car"
qv = sf.embed_text(qtext)
want = O.ranking(qv)
st, j = gj("/api/search?" + sf.q(q=qtext, n=10))
res = j["results"] if j else []
T.ok(st == 200 and len(res) == 10, "search: 200 and n=10 results")
T.ok(all(close(r["score"], s) for r, (s, _) in zip(res, want[:10])), "search: scores = numpy cosines over the stored vectors")
T.ok(all(O.rows[r["id"]]["path"] == r["path"] for r in res), "search: every id names its path")
T.ok([r["score"] for r in res] == sorted([r["score"] for r in res], reverse=True), "search: best first")
T.ok(all(k in res[0] for k in ("id", "path", "score", "size", "width", "height", "taken_at", "camera_make", "ext")),
     "search: results carry id, path, score and metadata")
st, j2 = gj("/api/search?" + sf.q(q=qtext, n=5, offset=5))
T.ok(st == 200 and [r["id"] for r in j2["results"]] == [r["id"] for r in res[5:10]], "offset=5&n=5: the second page")
T.ok(j2["more"] is True, "more: another page exists")
st, jall = gj("/api/search?" + sf.q(q=qtext, n=200))
T.ok(len(jall["results"]) == len(O.ok_files()) and jall["more"] is False,
     "n=200: every indexed file once (%d), more=false" % len(jall["results"]))

# filters: each result passes, and the count is what passes in the oracle
import calendar  # noqa: E402
t2019, t2021 = calendar.timegm((2019, 1, 1, 0, 0, 0)), calendar.timegm((2021, 1, 1, 0, 0, 0))
cases = [
    ({"after": "2019", "before": "2021"}, lambda r: t2019 <= O.when(r) < t2021),
    ({"ext": "png"}, lambda r: r["ext"] == "png"),
    ({"camera": "iphone"}, lambda r: "iphone" in (r["make"] + " " + r["model"]).lower()),
    ({"under": os.path.join(F["lib"], "dupes")}, lambda r: r["path"].startswith(os.path.join(F["lib"], "dupes") + "/")),
]
for params, keep in cases:
    w = O.ranking(qv, keep)
    st, jf = gj("/api/search?" + sf.q(q=qtext, n=200, **params))
    got = jf["results"] if jf else []
    T.ok(st == 200 and len(got) == len(w) and len(w) > 0 and all(keep(O.rows[r["id"]]) for r in got) and
         all(close(r["score"], s) for r, (s, _) in zip(got, w)),
         "filter %s: exactly the %d matching files, oracle scores" % (params, len(w)))
cut = want[6][0]
st, jm = gj("/api/search?" + sf.q(q=qtext, n=200, min_score="%.6f" % (cut - 1e-4)))
T.ok(st == 200 and all(r["score"] >= cut - 1e-3 for r in jm["results"]) and
     abs(len(jm["results"]) - 7) <= 1, "min_score: the results at or above the cutoff (%d)" % len(jm["results"]))

# --not: the difference vector
nv = sf.embed_text("a blue sky")
w = O.ranking(qv / np.linalg.norm(qv) - nv / np.linalg.norm(nv))
st, jn = gj("/api/search?" + sf.q(q=qtext, **{"not": "a blue sky"}, n=5))
T.ok(st == 200 and all(close(r["score"], s) for r, (s, _) in zip(jn["results"], w[:5])),
     "not=: scores against normalize(q - not), as the oracle computes")

# similar
sid = res[0]["id"]
sv = O.vec[O.rows[sid]["vector_id"]]
w = [t for t in O.ranking(sv) if t[1] != sid]
st, js = gj("/api/similar?" + sf.q(id=sid, n=5))
T.ok(st == 200 and sid not in [r["id"] for r in js["results"]] and
     all(close(r["score"], s) for r, (s, _) in zip(js["results"], w[:5])),
     "similar: the photo itself left out, oracle scores")

# ---- photo, thumb, image
st, jp = gj("/api/photo/%d" % sid)
row = O.rows[sid]
T.ok(st == 200 and jp["path"] == row["path"] and jp["size"] == row["size"] and jp["width"] == row["width"],
     "photo/ID: the row's path, size and width")
st, h, b = get("/api/image/%d" % sid)
with open(row["path"], "rb") as f:
    orig = f.read()
T.ok(st == 200 and b == orig and h["content-type"] == "image/jpeg", "image/ID: the original bytes")
st, h, b = get("/api/thumb/%d" % sid)
im = Image.open(io.BytesIO(b)) if st == 200 else None
T.ok(st == 200 and h["content-type"] == "image/jpeg" and im.format == "JPEG" and max(im.size) <= 256,
     "thumb/ID: a JPEG within 256 px (%s)" % (im and (im.size,)))
st2, h2, b2 = get("/api/thumb/%d" % sid)
cached = [n for n in os.listdir(os.path.join(cache, "clipdex", "thumbs")) if n.endswith(".jpg")]
T.ok(st2 == 200 and b2 == b and len(cached) >= 1, "thumb again: the same bytes, from the cache dir (%d entries)" % len(cached))
# EXIF orientation applied: the exif-rotated copy's thumbnail is upright
for pixrot, exifrot in F["rot_pairs"][:1]:
    idp = next(r["id"] for r in O.rows.values() if r["path"] == pixrot)
    ide = next(r["id"] for r in O.rows.values() if r["path"] == exifrot)
    a = Image.open(io.BytesIO(get("/api/thumb/%d" % idp)[2]))
    e = Image.open(io.BytesIO(get("/api/thumb/%d" % ide)[2]))
    diff = np.abs(np.asarray(a.convert("L"), dtype=float) - np.asarray(e.convert("L"), dtype=float)).mean() \
        if a.size == e.size else 999
    T.ok(a.size == e.size and diff < 12, "thumb: EXIF orientation applied (pixel-rotated vs EXIF-rotated copy: %s, mean diff %.1f)"
         % (e.size, diff))
# every format: a PNG's thumbnail is JPEG too
png_id = next(r["id"] for r in O.rows.values() if r["ext"] == "png")
st, h, b = get("/api/thumb/%d" % png_id)
T.ok(st == 200 and Image.open(io.BytesIO(b)).format == "JPEG", "thumb of a PNG: JPEG")
bad_id = next(r["id"] for r in O.rows.values() if r["state"] != 0)
st, h, b = get("/api/thumb/%d" % bad_id)
T.ok(st in (404, 422) and is_json_error(st, h, b, st), "thumb of a file that failed to index: a JSON error (%d)" % st)

# hostile names come back as JSON strings, byte for byte
st, jall = gj("/api/search?" + sf.q(q=qtext, n=200))
got = {r["path"] for r in jall["results"]}
T.ok(all(p in got for p in F["evil"][:3]), "hostile names: markup, quotes and newlines survive JSON")
raw = get("/api/search?" + sf.q(q=qtext, n=200))[2]
T.ok(b"\\udcff" in raw and b"\\udce9" in raw, "a name that is not UTF-8: its bytes as \\udcXX escapes (surrogateescape)")

# ---- dupes
st, jd = gj("/api/dupes")
groups = jd["groups"] if jd else []
copy_id = next(r["id"] for r in O.rows.values() if r["path"] == F["copy"])
T.ok(st == 200 and len(groups) >= 1, "dupes: groups (%d)" % len(groups))
by_hash = {}
for r in O.ok_files():
    by_hash.setdefault(r["hash"], set()).add(r["id"])
exact_sets = [s for s in by_hash.values() if len(s) > 1]
T.ok(all(any(s <= {f["id"] for f in g["files"]} for g in groups) for s in exact_sets),
     "dupes: every set of identical contents (from the database) is inside one group")
T.ok(all(g["files"][0]["keep"] and not any(f["keep"] for f in g["files"][1:]) for g in groups),
     "dupes: exactly the first of each group is the copy to keep")
T.ok(all(g["files"][0]["width"] * g["files"][0]["height"] >= max(f["width"] * f["height"] for f in g["files"])
         for g in groups), "dupes: the copy to keep has the most pixels")

# ---- moderation and marks
st, jmod = gj("/api/moderation")
T.ok(st == 200 and jmod["labelsets"] == [], "moderation: no label sets before a sweep")
labels = os.path.join(tmp, "labels.txt")
with open(labels, "w") as f:
    f.write("cat photo | yes\ndog photo | yes\nlandscape | no\n")
p = qf.run("moderate", "--labels", labels, "--threshold", "0", "--format", "json", "-n", "1000", data=D)
swept = qf.jsonl(p)
T.ok(p.returncode == 0 and len(swept) > 0, "clipdex moderate stored results (%d reported)" % len(swept))
st, jmod = gj("/api/moderation")
T.ok(st == 200 and len(jmod["labelsets"]) == 1, "moderation: the sweep's label set is listed")
lset = jmod["labelsets"][0]
st, jq = gj("/api/moderation?" + sf.q(labelset=lset))
queues = jq["labels"] if jq else []
T.ok(st == 200 and {x["label"] for x in queues} <= {"cat photo", "dog photo"} and queues,
     "moderation queue: flagged labels only (%s)" % [x["label"] for x in queues])
T.ok(all([i["probability"] for i in x["items"]] == sorted([i["probability"] for i in x["items"]], reverse=True)
         for x in queues), "moderation queue: ordered by probability")
item = queues[0]["items"][0]
lab = queues[0]["label"]
O2 = sf.Oracle(D)
mod_before = O2.mod_rows
st, h, b = get("/api/mark?" + sf.q(id=item["vector_id"], label=lab, mark="reviewed"))
T.ok(is_json_error(st, h, b, 405), "mark with GET: 405 (no state change on GET)")
st, h, b = sf.request(port, "POST", "/api/mark?" + sf.q(id=item["vector_id"], label=lab, mark="reviewed"))
T.ok(is_json_error(st, h, b, 403), "mark without the X-Clipdex header: 403")
st, h, b = sf.request(port, "POST", "/api/mark?" + sf.q(id=item["vector_id"], label=lab, mark="bogus"),
                      headers={"X-Clipdex": "1"})
T.ok(is_json_error(st, h, b, 400), "mark=bogus: 400")
st, h, b = sf.request(port, "POST", "/api/mark?" + sf.q(id=999999, label=lab, mark="reviewed"),
                      headers={"X-Clipdex": "1"})
T.ok(is_json_error(st, h, b, 404), "mark of an unknown vector: 404")
T.ok(sf.Oracle(D).marks == 0, "no mark stored by the refused requests")
st, h, b = sf.request(port, "POST", "/api/mark?" + sf.q(id=item["vector_id"], label=lab, mark="false_positive"),
                      headers={"X-Clipdex": "1"})
T.ok(st == 200, "mark false_positive: 200")
db = sqlite3.connect("file:%s?mode=ro" % os.path.join(D, "clipdex.db"), uri=True)
rows = db.execute("SELECT vector_id, label, mark FROM review_marks").fetchall()
db.close()
T.ok(rows == [(item["vector_id"], lab, "false_positive")], "the mark is in the index (%s)" % rows)
st, jq = gj("/api/moderation?" + sf.q(labelset=lset))
marked = [i for x in jq["labels"] if x["label"] == lab for i in x["items"] if i["vector_id"] == item["vector_id"]]
T.ok(marked and marked[0]["mark"] == "false_positive", "moderation queue shows the mark")
p = qf.run("moderate", "--labels", labels, "--threshold", "0", "--format", "json", "-n", "1000", data=D)
again = qf.jsonl(p)
vid_of = {r["id"]: r["vector_id"] for r in O.rows.values()}


def hits(recs, vid, label):
    return [r for r in recs if r.get("label") == label and vid_of.get(r.get("file_id")) == vid]


T.ok(hits(swept, item["vector_id"], lab) and not hits(again, item["vector_id"], lab) and
     len(again) == len(swept) - len(hits(swept, item["vector_id"], lab)),
     "a later sweep leaves the marked result out, and only it")
st, h, b = sf.request(port, "POST", "/api/mark?" + sf.q(id=item["vector_id"], label=lab, mark="none"),
                      headers={"X-Clipdex": "1"})
T.ok(st == 200 and sf.Oracle(D).marks == 0, "mark=none clears it")

# ---- search by a dropped image
with open(F["scenes"][3]["path"], "rb") as f:
    body = f.read()
want_id = next(r["id"] for r in O.rows.values() if r["path"] == F["scenes"][3]["path"])
st, h, b = sf.request(port, "POST", "/api/search?n=3", body=body, headers={"Content-Type": "application/octet-stream"})
j = json.loads(b.decode()) if st == 200 else {}
T.ok(st == 200 and j["results"][0]["id"] == want_id and j["results"][0]["score"] > 0.99,
     "POST an image: the indexed copy of it first (score %s)" % (j and j["results"][0]["score"],))
st, h, b = sf.request(port, "POST", "/api/search", body=b"this is not an image at all")
T.ok(is_json_error(st, h, b, 400), "POST a non-image: 400")
st, h, b = sf.request(port, "POST", "/api/search", body=b"")
T.ok(is_json_error(st, h, b, 400), "POST nothing: 400")

# ---- errors
for path, code, what in [
        ("/api/search", 400, "search without q"),
        ("/api/search?q=x&n=0", 400, "n=0"),
        ("/api/search?q=x&n=100000", 400, "n too large"),
        ("/api/search?q=x&offset=5000", 400, "offset too large"),
        ("/api/search?q=x&after=yesterday", 400, "a bad date"),
        ("/api/search?q=x&min_score=2", 400, "min_score out of range"),
        ("/api/search?q=x&under=relative/dir", 400, "under not absolute"),
        ("/api/search?" + sf.q(q="x" * 1001), 400, "q longer than 1000 bytes"),
        ("/api/search?" + sf.q(q="x", **{"not": ["a"] * 9}), 400, "too many not terms"),
        ("/api/similar", 400, "similar without id"),
        ("/api/similar?id=abc", 400, "similar id=abc"),
        ("/api/similar?id=999999", 404, "similar of an unknown id"),
        ("/api/photo/999999", 404, "an unknown photo"),
        ("/api/photo/-1", 400, "a negative id"),
        ("/api/photo/1x", 400, "id 1x"),
        ("/api/thumb/0", 400, "id 0"),
        ("/api/image/99999999999999999999999", 400, "an id that overflows"),
        ("/api/nothing", 404, "an unknown endpoint"),
        ("/nothing.html", 404, "an unknown page"),
        ("/api/dupes?bits=99", 400, "dupes bits=99"),
]:
    st, h, b = get(path)
    T.ok(is_json_error(st, h, b, code), "error: %s -> %d JSON (%d)" % (what, code, st))
st, h, b = sf.request(port, "DELETE", "/api/photo/1")
T.ok(is_json_error(st, h, b, 405), "DELETE: 405")
st, h, b = sf.request(port, "POST", "/api/photo/1", body=b"x")
T.ok(is_json_error(st, h, b, 405), "POST to a GET endpoint: 405")

# ---- path traversal: only indexed files, by id
with open("/etc/passwd", "rb") as f:
    passwd = f.read()
leaks = []
for path in ["/api/image/../../../../etc/passwd", "/api/image/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd",
             "/api/image//etc/passwd", "/api/image/%2fetc%2fpasswd", "/api/thumb/1/../../../etc/passwd",
             "/api/image/1%00/etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/image/" + "%2e%2e%2f" * 8 + "etc/passwd",
             "/app.js/../../../etc/passwd", "/api/photo/..%2f..%2fetc%2fpasswd"]:
    st, h, b = get(path)
    if st == 200 or b"root:" in b or passwd[:20] in b:
        leaks.append((path, st))
T.ok(not leaks, "path traversal attempts: never 200, never the file (%s)" % leaks)

# symlinks: an indexed file replaced by a symlink, a directory above one
victim = F["scenes"][5]["path"]
vid_file = next(r["id"] for r in O.rows.values() if r["path"] == victim)
secret = os.path.join(tmp, "outside-secret.jpg")
shutil.copy(F["scenes"][6]["path"], secret)
os.rename(victim, victim + ".moved")
os.symlink(secret, victim)
st, h, b = get("/api/image/%d" % vid_file)
st2, h2, b2 = get("/api/thumb/%d" % vid_file)
T.ok(is_json_error(st, h, b, 404) and is_json_error(st2, h2, b2, 404),
     "an indexed file replaced by a symlink: image and thumb 404 (%d, %d)" % (st, st2))
os.unlink(victim)
os.rename(victim + ".moved", victim)
st, h, b = get("/api/image/%d" % vid_file)
T.ok(st == 200, "the file back in place: served again")
pngdir = os.path.join(F["lib"], "png")
png_ids = [r["id"] for r in O.rows.values() if r["path"].startswith(pngdir + "/")]
outside = os.path.join(tmp, "outside-png")
shutil.copytree(pngdir, outside)
os.rename(pngdir, pngdir + ".moved")
os.symlink(outside, pngdir)
codes = [get("/api/image/%d" % i)[0] for i in png_ids]
T.ok(codes and all(c == 404 for c in codes), "a directory replaced by a symlink to copies: 404 for its files (%s)" % codes)
os.unlink(pngdir)
os.rename(pngdir + ".moved", pngdir)
# a different file moved to an indexed path (same name, other inode)
tmpcopy = victim + ".new"
shutil.copy(victim, tmpcopy)
os.rename(victim, victim + ".orig")
os.rename(tmpcopy, victim)
st, h, b = get("/api/image/%d" % vid_file)
T.ok(is_json_error(st, h, b, 404), "another file moved to an indexed path: 404 until reindexed")
os.rename(victim + ".orig", victim)

# ---- headers: CSP on every answer, never inline script
csp_ok = True
for path in ["/", "/app.js", "/app.css", "/api/status", "/api/nothing", "/api/thumb/%d" % sid]:
    st, h, b = get(path)
    c = h.get("content-security-policy", "")
    csp_ok &= "script-src 'self'" in c and "unsafe-inline" not in c and h.get("x-content-type-options") == "nosniff"
T.ok(csp_ok, "every answer: Content-Security-Policy without inline script, nosniff")
import html.parser  # noqa: E402


class Scripts(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.inline = 0
        self.handlers = 0
        self.inscript = False
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.handlers += sum(1 for k in a if k.startswith("on"))
        if tag == "script":
            self.inscript = True
            if "src" in a:
                self.srcs.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self.inscript = False

    def handle_data(self, data):
        if self.inscript and data.strip():
            self.inline += 1


st, h, b = get("/")
sp = Scripts()
sp.feed(b.decode())
T.ok(st == 200 and h["content-type"].startswith("text/html") and sp.inline == 0 and sp.handlers == 0 and
     sp.srcs == ["/app.js"] and b"http://" not in b and b"https://" not in b,
     "the page: one script, by src; no inline script or handlers; nothing from the network")
same = True
for url, name in (("/", "index.html"), ("/app.js", "app.js"), ("/app.css", "app.css")):
    with open(os.path.join(qf.ROOT, "query", "web", name), "rb") as f:
        same &= get(url)[2] == f.read()
T.ok(same, "the page, app.js and app.css are served byte for byte as in query/web/")
st, h, b = get("/app.js")
import re  # noqa: E402
T.ok(st == 200 and not re.search(rb"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function", b),
     "app.js: no innerHTML / outerHTML / document.write / eval")

# ---- tokens
S2 = sf.Server(D, "--token", "0123456789abcdef-TOKEN", cache=cache)
good = "0123456789abcdef-TOKEN"
st, h, b = sf.request(S2.port, "GET", "/api/status")
T.ok(is_json_error(st, h, b, 401), "token server: no token -> 401")
st, h, b = sf.request(S2.port, "GET", "/api/status", headers={"Authorization": "Bearer " + good[:-1] + "X"})
T.ok(is_json_error(st, h, b, 401), "a wrong token -> 401")
st, h, b = sf.request(S2.port, "GET", "/api/status", headers={"Authorization": "Bearer " + good + "X"})
T.ok(is_json_error(st, h, b, 401), "the token with a byte more -> 401")
st, h, b = sf.request(S2.port, "GET", "/", headers={})
T.ok(st == 401, "the page itself needs the token")
st, h, b = sf.request(S2.port, "GET", "/api/status", headers={"Authorization": "Bearer " + good})
T.ok(st == 200, "Authorization: Bearer TOKEN -> 200")
st, h, b = sf.request(S2.port, "GET", "/?token=" + good)
T.ok(st == 200 and "HttpOnly" in h.get("set-cookie", "") and good in h.get("set-cookie", ""),
     "?token= -> 200 and an HttpOnly cookie")
st, h, b = sf.request(S2.port, "GET", "/api/thumb/%d" % sid, headers={"Cookie": "a=b; clipdex_token=" + good})
T.ok(st == 200, "the cookie -> 200 (thumbnails in <img>)")
st, h, b = sf.request(S2.port, "GET", "/api/thumb/%d" % sid, headers={"Cookie": "clipdex_token=" + good + "0"})
T.ok(st == 401, "a wrong cookie -> 401")
S2.stop()

# ---- oversized and malformed requests; the server goes on


def raw(data, read=True, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


r = raw(b"GET /api/search?q=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
T.ok(400 <= status_of(r) < 500, "a 20 kB request line: 4xx (%d)" % status_of(r))
r = raw(b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\nConnection: close\r\n\r\n")
T.ok(400 <= status_of(r) < 500, "a 20 kB header: 4xx (%d)" % status_of(r))
r = raw(b"GARBAGE\r\n\r\n")
T.ok(status_of(r) == 0 or 400 <= status_of(r) < 500, "garbage instead of a request: 4xx or closed (%d)" % status_of(r))
r = raw(b"GET /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n")
T.ok(status_of(r) == 0 or 400 <= status_of(r) < 500, "a negative Content-Length: 4xx or closed (%d)" % status_of(r))
big = b"\xff\xd8" + b"\0" * (33 << 20)
try:
    st, h, b = sf.request(port, "POST", "/api/search?q=x", body=big, timeout=120)
except (ConnectionError, OSError) as e:
    st, h, b = 413, {"content-type": "application/json"}, b'{"error":"closed"}'
T.ok(st == 413, "a 33 MB upload: 413 (%s)" % st)
st, j = gj("/api/status")
T.ok(st == 200 and S.alive(), "after the malformed requests the server still answers")

# clients that hang up mid-response
big_id = max(O.ok_files(), key=lambda r: r["size"])["id"]
for i in range(20):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /api/%s/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (b"image" if i % 2 else b"search?q=x&n=200&x=", big_id))
    s.recv(100)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST on close
    s.close()
# clients that connect and say nothing, more than the connection limit
idle = []
for i in range(80):
    try:
        idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError:
        break
for s in idle:
    s.close()
time.sleep(0.5)
st, j = gj("/api/status")
T.ok(st == 200 and S.alive(), "after 20 hang-ups mid-response and 80 idle connections: still answering")

# ---- GETs change nothing
O3 = sf.Oracle(D)
for path in ["/api/search?q=x", "/api/similar?id=%d" % sid, "/api/dupes", "/api/moderation?labelset=" + lset,
             "/api/status", "/api/photo/%d" % sid]:
    get(path)
O4 = sf.Oracle(D)
T.ok((O3.marks, O3.mod_rows, len(O3.rows)) == (O4.marks, O4.mod_rows, len(O4.rows)), "GETs change nothing in the index")

# ---- a writer commits new photos while the server runs
newdir = os.path.join(F["lib"], "new")
os.makedirs(newdir)
newp = os.path.join(newdir, "fresh.jpg")
qf.scene(360, 270, 4242).save(newp, "JPEG")
p = qf.index(F["lib"], D)
T.ok(p.returncode == 0, "clipdex index adds a photo while the server runs")
st, j = gj("/api/search?" + sf.q(q=qtext, n=200, under=newdir))
T.ok(st == 200 and [r["path"] for r in j["results"]] == [newp], "the server sees the committed photo at once")
st, j = gj("/api/status")
T.ok(j["files"] == len(O.rows) + 1, "status counts it")

rc, err = S.stop()
T.ok(rc == 0, "SIGTERM: the server exits 0 (%s)" % rc)
shutil.rmtree(tmp)
sys.exit(T.done())
