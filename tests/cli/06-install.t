#!/usr/bin/python3
"""06-install.t - `make install DESTDIR=... PREFIX=/usr` puts the programs,
man pages, systemd user units and the CLIP BPE vocabulary (data/clip) where
an installed clipdex expects them.

The target's `all` prerequisite is taken as made (make -o all): the
programs under test are already built, and a test must not rebuild them
under the other tests' feet.  The vocabulary is checked against its
source, OpenAI's bpe_simple_vocab_16e6.txt.gz (data/clip/README.md): the
merges are its lines 1..48894, as CLIP's own SimpleTokenizer takes them,
and vocab.json holds the 256 byte symbols, their end-of-word forms, one
token per merge and the two specials (49408)."""
import filecmp
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLIPDEX_BUILD", "build")
T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-06-")
dest = os.path.join(tmp, "root")

env = dict(os.environ)
for k in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"):  # not the outer make's jobserver
    env.pop(k, None)
p = subprocess.run(["make", "--no-print-directory", "-o", "all", "install", "BUILD=" + BUILD,
                    "DESTDIR=" + dest, "PREFIX=/usr"],
                   cwd=ROOT, env=env, capture_output=True, text=True)
T.ok(p.returncode == 0, "make install DESTDIR=... PREFIX=/usr: exit 0")
if p.returncode != 0:
    T.diag(p.stdout[-2000:] + p.stderr[-2000:])
usr = os.path.join(dest, "usr")

# The programs: the built ones, executable, and they run from there.
for prog in ("clipdex", "clipdexd"):
    path = os.path.join(usr, "bin", prog)
    T.ok(os.access(path, os.X_OK) and filecmp.cmp(path, os.path.join(ROOT, BUILD, "bin", prog), shallow=False),
         "bin/%s installed, executable, the built program" % prog)
r = subprocess.run([os.path.join(usr, "bin", "clipdex"), "--version"], capture_output=True, text=True)
T.ok(r.returncode == 0 and r.stdout.startswith("clipdex "), "the installed clipdex runs (--version)")

# Man pages, one per section the repository has.
for page in sorted(os.listdir(os.path.join(ROOT, "man"))):
    sec = page.rsplit(".", 1)[-1]
    path = os.path.join(usr, "share", "man", "man" + sec, page)
    T.ok(os.path.isfile(path) and filecmp.cmp(path, os.path.join(ROOT, "man", page), shallow=False),
         "man page %s in man%s" % (page, sec))

# systemd user units start the programs at PREFIX.
for unit, prog in (("clipdexd.service", "clipdexd"), ("clipdex-serve.service", "clipdex")):
    path = os.path.join(usr, "lib", "systemd", "user", unit)
    execs = []
    if os.path.isfile(path):
        with open(path) as f:
            execs = [ln for ln in f if ln.startswith("ExecStart=")]
    T.ok(len(execs) == 1 and execs[0].startswith("ExecStart=/usr/bin/%s" % prog),
         "%s: ExecStart runs /usr/bin/%s (%s)" % (unit, prog, execs[0].strip() if execs else "none"))

# The CLIP vocabulary, at PREFIX/share/clipdex/clip.
clip = os.path.join(usr, "share", "clipdex", "clip")
for name in ("vocab.json", "merges.txt", "README.md"):
    path = os.path.join(clip, name)
    T.ok(os.path.isfile(path) and filecmp.cmp(path, os.path.join(ROOT, "data", "clip", name), shallow=False),
         "share/clipdex/clip/%s installed (identical to data/clip)" % name)

with gzip.open(os.path.join(ROOT, "data", "clip", "bpe_simple_vocab_16e6.txt.gz"), "rt", encoding="utf-8") as f:
    bpe = f.read().split("\n")
want_merges = bpe[1:49152 - 256 - 2 + 1]
try:
    with open(os.path.join(clip, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
except OSError:
    lines = []
T.ok(lines[:1] == ["#version: 0.2"] and lines[1:] == want_merges,
     "merges.txt: the header and OpenAI's %d merges in order (%d lines)" % (len(want_merges), len(lines)))
try:
    with open(os.path.join(clip, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
except (OSError, ValueError):
    vocab = {}
merged = ["".join(m.split(" ")) for m in want_merges]
T.ok(len(vocab) == 49408 and vocab.get("<|startoftext|>") == 49406 and vocab.get("<|endoftext|>") == 49407,
     "vocab.json: 49408 tokens, the specials at 49406 and 49407 (%d)" % len(vocab))
T.ok(all(vocab.get(m) == 512 + i for i, m in enumerate(merged)),
     "vocab.json: merge i is token 512 + i, as CLIP numbers them")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
