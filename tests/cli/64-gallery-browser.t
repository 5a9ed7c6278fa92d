#!/usr/bin/python3
"""64-gallery-browser.t - the HTML gallery rendered by a real browser:
headless Chromium (Debian's chromium package) loads a search gallery and a
dupes gallery, and every embedded thumbnail must have decoded (complete,
with the natural size of the JPEG inside it), with no network request.

scripts/deps.sh installs chromium (71-serve-browser.t drives it too), so
a missing browser is a failure, not a skip.  60-search.t and 61-dupes.t
check the same pages with an HTML parser and decode each thumbnail."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
T = qf.Tap()
if not BROWSER:
    T.ok(False, "chromium is installed (make deps installs it)")
    sys.exit(T.done())

tmp = tempfile.mkdtemp(prefix="cdx-64-")
F = qf.build(tmp)
D = F["data"]

# Appended before </body>: counts thumbnails that decoded, into the DOM.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  var sizes = ok.map(function (i) { return i.naturalWidth + 'x' + i.naturalHeight; }).join(',');
  document.body.setAttribute('data-probe', imgs.length + ' ' + ok.length + ' ' + sizes);
});
</script>
</body>"""


def render(page):
    probe = page + ".probe.html"
    with open(page, encoding="utf-8") as f:
        html = f.read()
    with open(probe, "w", encoding="utf-8") as f:
        f.write(html.replace("</body>", PROBE))
    prof = tempfile.mkdtemp(prefix="cdx-chromium-", dir=tmp)
    p = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
                        "--no-first-run", "--user-data-dir=" + prof, "--virtual-time-budget=5000",
                        "--dump-dom", "file://" + probe], capture_output=True, timeout=120)
    m = re.search(r'data-probe="(\d+) (\d+) ([0-9x,]*)"', p.stdout.decode(errors="replace"))
    if not m:
        T.diag("chromium printed no probe: %s" % p.stderr.decode(errors="replace")[-800:])
        return None
    return int(m.group(1)), int(m.group(2)), m.group(3).split(",") if m.group(3) else []


page = os.path.join(tmp, "search.html")
p = qf.run("search", "--format", "html", "-o", page, "-n", "25", "a red car", data=D)
T.ok(p.returncode == 0, "search gallery written")
r = render(page)
T.ok(r is not None and r[0] == 25 and r[1] == 25, "chromium: all 25 search thumbnails decoded (%s)" % (r and r[:2],))
T.ok(r is not None and all(max(map(int, s.split("x"))) <= 256 for s in r[2]), "chromium: thumbnails within 256 px")

page = os.path.join(tmp, "dupes.html")
p = qf.run("dupes", "--format", "html", "-o", page, data=D, model=None)
groups = qf.jsonl(qf.run("dupes", "--format", "json", data=D, model=None))
n = sum(len(g["files"]) for g in groups)
r = render(page)
T.ok(r is not None and r[0] == n and r[1] == n, "chromium: all %d dupes thumbnails decoded" % n)

shutil.rmtree(tmp)
sys.exit(T.done())
