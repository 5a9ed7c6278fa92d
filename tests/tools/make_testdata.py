#!/usr/bin/env python3
"""make_testdata.py - placeholder; filled in by the model generator work."""
import argparse, os
ap = argparse.ArgumentParser(); ap.add_argument("--out", required=True); a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
