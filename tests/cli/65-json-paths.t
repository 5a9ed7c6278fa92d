#!/usr/bin/python3
"""65-json-paths.t - `--format json` names the exact bytes of a path that
is not valid UTF-8: each stray byte is the lone surrogate U+DC00+byte
(Python's surrogateescape), so json.loads(...).encode("utf-8",
"surrogateescape") gives back the file's name.  The oracle is Python's
own codec and the names the test wrote, not clipdex's output."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-65-")
lib = os.path.realpath(os.path.join(tmp, "lib")).encode()
os.makedirs(lib)
names = [b"caf\xe9.png",              # Latin-1 e-acute: once written as U+00E9, which is another file
         "caf\u00e9.png".encode(),    # the same name in UTF-8: copied through
         b"over\xc0\xaflong.png",     # overlong '/'
         b"sur\xed\xa0\x80.png",      # an encoded surrogate
         b"cut\xe2\x82.png",          # a truncated sequence
         b"big\xf4\x90\x80\x80.png",  # above U+10FFFF
         "emoji\U0001f600.png".encode()]
for i, n in enumerate(names):
    qf.scene(64, 48, 300 + i).save(os.fsdecode(os.path.join(lib, n)), "PNG")
data = os.path.join(tmp, "data")
p = qf.index(os.fsdecode(lib), data)
T.ok(p.returncode == 0, "indexed %d files with unusual names" % len(names))

p = qf.run("search", "--format", "json", "-n", "100", "anything", data=data)
T.ok(p.returncode == 0, "search --format json: exit 0")
try:
    got = [json.loads(l)["path"] for l in p.stdout.decode("utf-8").splitlines()]
    T.ok(True, "the output is valid UTF-8 and each line valid JSON")
except (UnicodeDecodeError, ValueError) as e:
    got = []
    T.ok(False, "the output is valid UTF-8 and each line valid JSON (%s)" % e)
back = sorted(g.encode("utf-8", "surrogateescape") for g in got)
want = sorted(os.path.join(lib, n) for n in names)
T.ok(back == want, "every path round-trips to its exact bytes")
for w in want:
    if w not in back:
        T.diag("missing %r" % w)
for n in names:
    try:
        n.decode("utf-8")
    except UnicodeDecodeError:
        continue
    T.ok(os.path.join(lib, n).decode() in got, "valid UTF-8 copied through: %s" % n.decode())
shutil.rmtree(tmp)
sys.exit(T.done())
