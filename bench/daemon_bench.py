#!/usr/bin/python3
"""daemon_bench.py - clipdexd end to end (bench/run-daemon.sh runs this).

  daemon_bench.py photos OUT_DIR N       make N distinct photo files from the
                                         shared corpus (jpeg/ and exif/)
  daemon_bench.py bare BUILD MODEL REPS [PRECISION]
                                         the engine alone (engine_bench), + CPU
  daemon_bench.py once BUILD MODEL DIR [PRECISION]
                                         one-shot indexing; prints key value
  daemon_bench.py latency BUILD MODEL SRC_DIR N
                                         close-after-write -> queryable, N files

Photos: every corpus JPEG that Pillow decodes and whose short side is at
least 224 pixels (real photos, not the decoder test patterns), replicated
round-robin to N files; each copy gets its index appended after the JPEG
data, so every file has its own SHA-256 (no shared vectors) and decodes
to the same pixels.

Queryable: the file's row has a vector in SQLite, committed.  A reader
(clipdex search) opening the store then replays the change log into its
FAISS index, so that is the moment a search can return the file.
"""
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

SHARED = os.environ.get("CLIPDEX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))


def corpus_photos():
    from PIL import Image
    out = []
    for sub in ("jpeg", "exif"):
        top = os.path.join(SHARED, "corpus", sub)
        for d, _, files in os.walk(top):
            for f in sorted(files):
                if not f.lower().endswith((".jpg", ".jpeg")):
                    continue
                p = os.path.join(d, f)
                try:
                    with Image.open(p) as im:
                        im.load()
                        if min(im.size) >= 224 and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
                            out.append((p, im.size))
                except Exception:
                    pass
    return sorted(out)


def make_photos(out_dir, n):
    photos = corpus_photos()
    if not photos:
        sys.exit("daemon_bench: no corpus photos under %s" % SHARED)
    os.makedirs(out_dir, exist_ok=True)
    for i in range(n):
        src, _ = photos[i % len(photos)]
        with open(src, "rb") as f:
            data = f.read()
        # Sub-directories of 100, as cameras make them.
        d = os.path.join(out_dir, "%03d" % (i // 100))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "img%05d.jpg" % i), "wb") as f:
            f.write(data + b"\0clipdex-bench-%d" % i)
    px = [w * h for _, (w, h) in photos]
    print("photos %d" % n)
    print("distinct_sources %d" % len(photos))
    print("median_megapixels %.2f" % (statistics.median(px) / 1e6))
    print("max_megapixels %.2f" % (max(px) / 1e6))


def run_once(build, model, photos, precision="f32"):
    data = tempfile.mkdtemp(prefix="cdx-bench-data-")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(build, "bin", "clipdexd"), "--once", "-c", "/dev/null",
                        "--precision", precision, "--model", model, "--data", data, photos],
                       capture_output=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        sys.exit("daemon_bench: clipdexd failed (%d):\n%s" % (p.returncode, err[-2000:]))
    m = re.search(r"indexed in ([0-9.]+) s: (\d+) embedded \(([0-9.]+) images/s\).*?(\d+) failed", err)
    if not m:
        sys.exit("daemon_bench: no summary line:\n" + err[-2000:])
    secs, embedded, rate, failed = float(m.group(1)), int(m.group(2)), float(m.group(3)), int(m.group(4))
    m2 = re.search(r"the model computed ([0-9.]+) s of the ([0-9.]+) s \(\d+%\) in (\d+) batches "
                   r"\(([0-9.]+) images/s while computing\)", err)
    if m2:
        print("once_model_busy_pct %.1f" % (100.0 * float(m2.group(1)) / max(float(m2.group(2)), 1e-9)))
        print("once_batches %s" % m2.group(3))
        print("once_images_per_s_computing %s" % m2.group(4))
    print("once_embedded %d" % embedded)
    print("once_failed %d" % failed)
    print("once_index_s %.2f" % secs)
    print("once_images_per_s %.2f" % rate)
    print("once_wall_s %.2f" % wall)
    print("once_wall_images_per_s %.2f" % (embedded / wall))
    print("once_cpu_ms_per_image %.1f" % (1000.0 * cpu / max(embedded, 1)))
    subprocess.run(["rm", "-rf", data])


def bare(build, model, reps, precision="f32"):
    """The engine alone (bench/engine_bench.c), with its CPU time."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([os.path.join(build, "bench", "engine_bench"), model, "images", "16", str(reps),
                        precision], capture_output=True, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    sys.stdout.write(p.stdout.decode())
    # reps timed batches of 16 and one warm-up batch
    print("bare_cpu_ms_per_image %.1f" % (1000.0 * cpu / ((reps + 1) * 16)))


def latency(build, model, src_dir, n):
    srcs = []
    for d, _, files in os.walk(src_dir):
        srcs += [os.path.join(d, f) for f in sorted(files)]
    srcs = sorted(srcs)[:n]
    tmp = tempfile.mkdtemp(prefix="cdx-bench-lat-")
    root, data = os.path.join(tmp, "photos"), os.path.join(tmp, "data")
    os.makedirs(root)
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen([os.path.join(build, "bin", "clipdexd"), "-c", "/dev/null", "--model", model,
                             "--data", data, root], stdout=log, stderr=log)
    db = os.path.join(data, "clipdex.db")

    def logtext():
        with open(os.path.join(tmp, "log"), "rb") as f:
            return f.read().decode(errors="replace")

    deadline = time.monotonic() + 120
    while "watching " not in logtext() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    lats = []
    for i, s in enumerate(srcs):
        dst = os.path.join(root, "new%03d.jpg" % i)
        with open(s, "rb") as f:
            data_bytes = f.read() + b"\0latency-%d" % i
        with open(dst, "wb") as f:
            f.write(data_bytes)
        t0 = time.monotonic()  # after close(): IN_CLOSE_WRITE is queued
        key = os.fsencode(dst)
        while True:
            try:
                r = con.execute("SELECT vector_id, state FROM files WHERE path = ?", (key,)).fetchone()
            except sqlite3.OperationalError:
                r = None
            if r and (r[0] is not None or r[1] == 1):
                break
            if time.monotonic() - t0 > 60:
                break
            time.sleep(0.005)
        lats.append(time.monotonic() - t0)
    con.close()
    proc.terminate()
    proc.wait(30)
    log.close()
    lats.sort()
    print("latency_files %d" % len(lats))
    print("latency_median_s %.3f" % statistics.median(lats))
    print("latency_p90_s %.3f" % lats[int(0.9 * (len(lats) - 1))])
    print("latency_max_s %.3f" % lats[-1])
    subprocess.run(["rm", "-rf", tmp])


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "photos":
        make_photos(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "bare":
        bare(sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:])
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "once":
        run_once(sys.argv[2], sys.argv[3], sys.argv[4], *sys.argv[5:])
    elif len(sys.argv) == 6 and sys.argv[1] == "latency":
        latency(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
