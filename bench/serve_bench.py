#!/usr/bin/python3
"""serve_bench.py CLIPDEX DATA MODEL [--clients 1,32] [--requests N] -
search latency through HTTP: starts `clipdex serve` on 127.0.0.1 (an
ephemeral port) over the store in DATA, then for each client count runs
that many keep-alive clients, each sending searches with distinct texts
(after a warm-up): N with one client, --total in all with several; prints
one line per count:

    clients C requests R qps Q p50_ms X p99_ms Y

The latency of a request is from sending it to the last byte of the
answer (tokenize + encode with the text tower + search + JSON)."""
import argparse
import http.client
import os
import subprocess
import threading
import time
import urllib.parse

PHRASES = ["a dog on a beach", "a red car", "mountains at sunset", "a bicycle against a wall", "a wedding",
           "a cat asleep on a sofa", "snow on trees", "a city street at night", "a bowl of fruit", "the sea",
           "children playing football", "an old church", "a plate of pasta", "a birthday cake", "a forest path"]


def client(port, texts, out, n_hits):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for t in texts:
        t0 = time.perf_counter()
        c.request("GET", "/api/search?" + urllib.parse.urlencode({"q": t, "n": n_hits}))
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit("serve_bench: HTTP %d for %r" % (r.status, t))
        out.append(time.perf_counter() - t0)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clipdex")
    ap.add_argument("data")
    ap.add_argument("model")
    ap.add_argument("--clients", default="1,32")
    ap.add_argument("--requests", type=int, default=200, help="per client with 1 client")
    ap.add_argument("--total", type=int, default=640, help="in all with several clients")
    ap.add_argument("--hits", type=int, default=50)
    ap.add_argument("--threads", default="4")
    a = ap.parse_args()
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(a.data, "..", "serve-cache"))
    p = subprocess.Popen([a.clipdex, "serve", "--data", a.data, "--model", a.model, "--listen", "127.0.0.1:0",
                          "--threads", a.threads], stdout=subprocess.PIPE, env=env)
    try:
        line = p.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        warm = []
        client(port, ["warm up %d" % i for i in range(20)], warm, a.hits)
        for nc in [int(x) for x in a.clients.split(",")]:
            per = a.requests if nc == 1 else max(1, a.total // nc)
            lat = []
            threads = [threading.Thread(target=client, args=(
                port, ["%s %d" % (PHRASES[(k + i) % len(PHRASES)], k * per + i) for i in range(per)],
                lat, a.hits)) for k in range(nc)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            dt = time.perf_counter() - t0
            lat.sort()
            n = len(lat)
            print("clients %d requests %d qps %.1f p50_ms %.1f p99_ms %.1f" %
                  (nc, n, n / dt, 1e3 * lat[n // 2], 1e3 * lat[min(n - 1, int(0.99 * n))]), flush=True)
        # one query again and again: its embedding is cached by the server,
        # so this is HTTP + vector search + rows + JSON alone
        lat = []
        client(port, ["a dog on a beach"] * a.requests, lat, a.hits)
        lat.sort()
        n = len(lat)
        print("repeated-query(cached-embedding) clients 1 requests %d p50_ms %.1f p99_ms %.1f" %
              (n, 1e3 * lat[n // 2], 1e3 * lat[min(n - 1, int(0.99 * n))]), flush=True)
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
