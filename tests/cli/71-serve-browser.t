#!/usr/bin/python3
"""71-serve-browser.t - the web app of `clipdex serve` in a real browser:
Debian's chromium, headless, driven by puppeteer-core
(tests/browser/serve.test.js; `make deps` installs both).  Type a query
and see results, hostile file names shown as text, open a photo, the
arrow keys, "more like this", a filter kept in a bookmarkable URL,
endless scrolling, a dropped image, a duplicates group with the export,
a moderation mark; no script error, no CSP violation, no request off the
server.  Screenshots go to build/browser/.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402
import serve_fixture as sf  # noqa: E402

T = qf.Tap()
ROOT = qf.ROOT
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
DRIVER = os.path.join(ROOT, "tests", "browser", "node_modules", "puppeteer-core")
for what, ok in (("chromium (%s)" % CHROMIUM, os.access(CHROMIUM, os.X_OK)), ("node", NODE),
                 ("puppeteer-core (tests/browser)", os.path.isdir(DRIVER))):
    if not ok:
        # make deps installs all three; a missing one is a broken setup
        T.ok(False, "%s is installed (run make deps)" % what)
        sys.exit(T.done())

tmp = tempfile.mkdtemp(prefix="cdx-71-")
F = sf.build(tmp)
D = F["data"]
O = sf.Oracle(D)
labels = os.path.join(tmp, "labels.txt")
with open(labels, "w") as f:
    f.write("cat photo | yes\ndog photo | yes\nlandscape | no\n")
p = qf.run("moderate", "--labels", labels, "--threshold", "0", "--format", "json", data=D)
T.ok(p.returncode == 0, "a moderation sweep to review")

shots = os.path.join(ROOT, qf.BUILD, "browser")
shutil.rmtree(shots, ignore_errors=True)
os.makedirs(shots)
S = sf.Server(D, cache=os.path.join(tmp, "cache"))


def as_api(path):
    """The path as the API writes it: bytes that are not UTF-8 become
    U+DC80..U+DCFF, one lone surrogate per byte (Python's surrogateescape,
    man/clipdex.1), which is what os.fsdecode gives."""
    return os.fsdecode(os.fsencode(path))


facts = {
    "evil": [as_api(p) for p in F["evil"]],
    "png": sum(1 for r in O.ok_files() if r["ext"] == "png"),
    "photo": next(r["id"] for r in O.rows.values() if r["path"] == F["scenes"][4]["path"]),
}
ff = os.path.join(tmp, "facts.json")
with open(ff, "w") as f:
    json.dump(facts, f)
env = dict(os.environ, CHROMIUM=CHROMIUM, HOME=tmp, XDG_CONFIG_HOME=os.path.join(tmp, "xdg"),
           XDG_CACHE_HOME=os.path.join(tmp, "xdg-cache"))
try:
    p = subprocess.run([NODE, os.path.join(ROOT, "tests", "browser", "serve.test.js"), S.url, shots, ff],
                       capture_output=True, timeout=600, env=env, cwd=os.path.join(ROOT, "tests", "browser"))
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
except subprocess.TimeoutExpired:
    out, err = "", "timed out after 600 s"
n = 0
for line in out.splitlines():
    try:
        rec = json.loads(line)
    except ValueError:
        T.diag(line)
        continue
    if "diag" in rec:
        T.diag(rec["diag"])
    else:
        n += 1
        T.ok(rec["ok"], rec["msg"])
T.ok(n >= 20, "the browser script ran its checks (%d)" % n)
if err.strip():
    T.diag(err[-1500:])
want = ["search.png", "hostile-names.png", "photo.png", "more-like-this.png", "filter.png", "dropped.png",
        "dupes.png", "moderation.png"]
have = [w for w in want if os.path.exists(os.path.join(shots, w)) and
        open(os.path.join(shots, w), "rb").read(8) == b"\x89PNG\r\n\x1a\n"]
T.ok(have == want, "screenshots in %s (%d of %d)" % (os.path.relpath(shots, ROOT), len(have), len(want)))
rc, serr = S.stop()
T.ok(rc == 0, "the server stops cleanly")
shutil.rmtree(tmp)
sys.exit(T.done())
