#!/usr/bin/python3
"""12-weights-cache.t - the cache of converted (bf16/int8) weights
(core/engine/qcache.c).

Oracle: the same command with the cache off (CLIPDEX_CACHE=off), which
converts the float32 weights afresh in that process.  A cached run must
print the same embeddings to the last digit, whether it wrote the cache
(cold) or read it (warm); so must a run whose cache file was damaged:
  truncated, one flipped byte in the data (checksum), a file made for
  another precision renamed into place (key), a file of garbage;
each is reported in exactly one warning line, then converted again and
rewritten (the next run prints no warning).  A cache directory that
cannot be written is no error and leaves no file.  `clipdex search` with a
text query and auto precision runs the text tower at int8 from the cache
(its file is text-int8), and at float32 with the cache off (no file).
Prints TAP.
"""
import glob
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLIPDEX_BUILD", "build")
CLIPDEX = os.path.join(ROOT, BUILD, "bin", "clipdex")
TESTDATA = os.path.join(ROOT, "build", "testdata")
MODEL = os.path.join(TESTDATA, "models", "tiny")
IMAGES = os.path.join(TESTDATA, "images")
TEXTS = ["a photo of a dog", "kids on a red sled in the snow", "receipt"]
PICS = [os.path.join(IMAGES, f) for f in ("photo420.jpg", "gray.png")]

n = 0
failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", n, msg), flush=True)
    return cond


def run(args, cache, extra=None):
    env = dict(os.environ)
    for k in ("CLIPDEX_PRECISION", "CLIPDEX_ISA", "CLIPDEX_DEBUG"):
        env.pop(k, None)
    env["CLIPDEX_CACHE"] = cache
    env.update(extra or {})
    return subprocess.run(args, capture_output=True, env=env)


def embed(precision, cache, images=True, extra=None):
    args = [CLIPDEX, "embed", "--model", MODEL, "--format", "json", "--precision", precision]
    for t in TEXTS:
        args += ["--text", t]
    for p in PICS if images else []:
        args += ["--image", p]
    return run(args, cache, extra)


def warnings(p):
    return [l for l in p.stderr.decode(errors="replace").splitlines() if "converted-weights cache" in l]


def files(d, pattern="*.cdxw"):
    return sorted(glob.glob(os.path.join(d, pattern)))


def main():
    tmp = tempfile.mkdtemp(prefix="cdx-wcache-")
    try:
        cache = os.path.join(tmp, "cache")
        for prec in ("int8", "bf16"):
            want = embed(prec, "off")
            if not ok(want.returncode == 0 and want.stdout, "%s: cache off runs" % prec):
                continue
            cold = embed(prec, cache)
            made = files(cache, "*-%s.cdxw" % prec)
            ok(cold.returncode == 0 and cold.stdout == want.stdout,
               "%s cold: embeddings identical to a fresh conversion" % prec)
            ok(len(made) == 2 and any("-text-" in f for f in made) and any("-vision-" in f for f in made),
               "%s cold: one file per tower written (%s)" % (prec, ", ".join(os.path.basename(f) for f in made)))
            ok(not glob.glob(os.path.join(cache, "*.cdxw.*")), "%s: no temporary file left" % prec)
            warm = embed(prec, cache)
            ok(warm.returncode == 0 and warm.stdout == want.stdout and not warnings(warm),
               "%s warm: embeddings identical, no warning" % prec)

        # Damaged files: one warning, the right answer, a good file again.
        want = embed("int8", "off").stdout
        text8 = files(cache, "*-text-int8.cdxw")[0]
        good = open(text8, "rb").read()
        bf16 = open(files(cache, "*-text-bf16.cdxw")[0], "rb").read()
        mid = len(good) // 2
        damage = {
            "truncated": good[:mid],
            "a byte flipped in the data": good[:mid] + bytes([good[mid] ^ 0x10]) + good[mid + 1:],
            "another precision's file": bf16,
            "garbage": os.urandom(100000),
            "empty": b"",
        }
        for what, data in damage.items():
            with open(text8, "wb") as f:
                f.write(data)
            p = embed("int8", cache, images=False)
            w = warnings(p)
            ok(p.returncode == 0 and p.stdout == want[:len(p.stdout)] and p.stdout.count(b"\n") == len(TEXTS),
               "%s: the embeddings are still right" % what)
            ok(len(w) == 1 and text8 in w[0], "%s: one warning line (%s)" % (what, w[0] if w else "none"))
            again = embed("int8", cache, images=False)
            ok(open(text8, "rb").read() == good and not warnings(again),
               "%s: the file was rewritten whole, the next run is quiet" % what)

        # Another CPU level is another key: its own file beside the first.
        p = embed("int8", cache, images=False, extra={"CLIPDEX_ISA": "avx512_vnni"})
        ok(p.returncode == 0 and p.stdout == want[:len(p.stdout)] and p.stdout
           and len(files(cache, "*-text-int8.cdxw")) in (1, 2),
           "CLIPDEX_ISA=avx512_vnni runs beside the cache (%d text-int8 files)"
           % len(files(cache, "*-text-int8.cdxw")))

        # A cache that cannot be written: no error, no warning, no file.
        ro = os.path.join(tmp, "ro")
        os.makedirs(ro)
        os.chmod(ro, 0o555)
        notdir = os.path.join(tmp, "afile")
        open(notdir, "w").close()
        for label, d in (("a read-only directory", ro), ("a path under a file", os.path.join(notdir, "c"))):
            p = embed("int8", d)
            ok(p.returncode == 0 and p.stdout == embed("int8", "off").stdout and not p.stderr.strip()
               and not (os.path.isdir(d) and files(d) and os.geteuid() != 0),
               "cache in %s: runs, identical embeddings, quiet" % label)
        # read-only with a good file in it: used as is
        ro2 = os.path.join(tmp, "ro2")
        shutil.copytree(cache, ro2)
        os.chmod(ro2, 0o555)
        p = embed("int8", ro2)
        ok(p.returncode == 0 and p.stdout == want and not warnings(p),
           "a read-only cache directory with the files in it is read")

        # search: auto precision and a text query -> the text tower at int8
        lib, data, sc = os.path.join(tmp, "lib"), os.path.join(tmp, "data"), os.path.join(tmp, "sc")
        os.makedirs(lib)
        for f in PICS:
            shutil.copy(f, lib)
        env = {"CLIPDEX_MODEL": MODEL, "XDG_CONFIG_HOME": tmp}
        p = run([CLIPDEX, "index", "--data", data, "--precision", "f32", lib], "off", env)
        ok(p.returncode == 0, "a store of %d images" % len(PICS))
        s1 = run([CLIPDEX, "search", "--data", data, "-n", "2", "a dog"], sc, env)
        made = [os.path.basename(f) for f in files(sc)]
        ok(s1.returncode == 0 and len(made) == 1 and made[0].endswith("-text-int8.cdxw"),
           "search, auto, text query: the text tower runs int8 (cache: %s)" % ", ".join(made))
        s2 = run([CLIPDEX, "search", "--data", data, "-n", "2", "a dog"], sc, env)
        ok(s2.returncode == 0 and s2.stdout == s1.stdout and s1.stdout.count(b"\n") == 2,
           "search: the warm run prints the same results")
        off = run([CLIPDEX, "search", "--data", data, "-n", "2", "a dog"], "off", env)
        ok(off.returncode == 0 and off.stdout.count(b"\n") == 2 and len(files(sc)) == 1,
           "search with the cache off runs (at float32) and writes nothing")
    finally:
        for d, _, _ in os.walk(tmp):
            os.chmod(d, 0o755)
        shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
