#!/usr/bin/python3
"""dupes_baseline.py VECTORS.npy [--threshold C] - the Python baseline of
`clipdex dupes --method semantic` in bench/run-query.sh: the same
similarity self-join done the straightforward way with numpy (OpenBLAS,
all cores): the vectors loaded, X[i:i+B] @ X[j:j+C].T block by block
(upper triangle only), pairs >= C joined by union-find, the number of
groups of two or more printed.  Timed from process start to exit by the
caller."""
import argparse

import numpy as np


def find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vectors")
    ap.add_argument("--threshold", type=float, default=0.95)
    a = ap.parse_args()
    x = np.load(a.vectors)
    n = x.shape[0]
    parent = list(range(n))
    b, c = 2048, 16384
    for i in range(0, n, b):
        for j in range(i, n, c):
            g = x[i:i + b] @ x[j:j + c].T
            rows, cols = np.nonzero(g >= a.threshold)
            for r, k in zip(rows.tolist(), cols.tolist()):
                if i + r < j + k:
                    ra, rb = find(parent, i + r), find(parent, j + k)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    sizes = {}
    for v in range(n):
        r = find(parent, v)
        sizes[r] = sizes.get(r, 0) + 1
    print(sum(1 for s in sizes.values() if s > 1))


if __name__ == "__main__":
    main()
