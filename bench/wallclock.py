#!/usr/bin/python3
"""wallclock.py [-r RUNS] [-w WARMUP] -- CMD ARGS... - run a command
repeatedly (output discarded) and print its wall-clock time from process
start to exit: "median_ms X min_ms Y max_ms Z runs R".  The warm-up runs
fill the page cache and are not counted.  A run that fails aborts."""
import argparse
import statistics
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", type=int, default=11)
    ap.add_argument("-w", type=int, default=2)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    ts = []
    for i in range(a.w + a.r):
        t = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = (time.perf_counter() - t) * 1e3
        if p.returncode not in (0, 1):
            sys.stderr.write(p.stderr.decode(errors="replace"))
            raise SystemExit("wallclock: %s exited %d" % (cmd[0], p.returncode))
        if i >= a.w:
            ts.append(dt)
    print("median_ms %.1f min_ms %.1f max_ms %.1f runs %d" % (statistics.median(ts), min(ts), max(ts), len(ts)))


if __name__ == "__main__":
    main()
