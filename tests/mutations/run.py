#!/usr/bin/python3
"""run.py - the mutation check behind `make mutation-check`.

Each tests/mutations/*.mut file describes one plausible mistake (format in
tests/mutations/README).  For every selected mutation this script applies
it to a scratch copy of the tree, rebuilds incrementally, runs only the
tests the entry names, and records whether one of them failed (caught) or
all passed (SURVIVED).  The developer's build/ is never written: the copy
lives in build-mut/src with its own build/ (build/faiss is a symlink to
the developer's, build/testdata one to build-mut/testdata).

The copy is kept between runs and refreshed file by file (a file is
rewritten only when its content differs), so a second run rebuilds only
what changed.  Before any mutation the unmutated copy is built and every
test the selected entries name must pass there; an entry whose test fails
unmutated, whose original text does not occur exactly once, none of
whose tests exists or which does not compile is reported BROKEN.  A
listed test that does not exist is reported (and fails the run) while the
entry's other tests still run.

Exit status: 0 when every selected mutation was caught and every listed
test exists, 1 when one survived, an entry is broken or a test is
missing, 2 on a usage or setup error.

    tests/mutations/run.py [-k|--keep-going] [-j N] [--list] [ID ...]

IDs select entries by id (the file name without .mut) or by a prefix of
it ("07" selects 07a and 07b).  Without -k the run stops at the first
survivor; BROKEN entries never stop it.
"""
import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MUTDIR = os.path.join(ROOT, "tests", "mutations")
WORK = os.path.join(ROOT, "build-mut")
SRC = os.path.join(WORK, "src")
LOGS = os.path.join(WORK, "logs")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
# A test that runs this long on a mutant is stopped and counts as
# catching it (a mutation that makes a loop endless is caught).
TEST_TIMEOUT_MIN = 300
TEST_TIMEOUT_FACTOR = 8


class Entry:
    def __init__(self, path):
        self.path = path
        self.id = os.path.basename(path)[:-len(".mut")]
        self.desc = ""
        self.tests = []
        self.hunks = []     # [file, original, replacement]
        self.problem = None  # why the entry is broken, once known
        self.result = None   # "caught", "SURVIVED", "BROKEN"
        self.by = ""
        self.seconds = 0.0
        self.backup = {}     # file -> original content while applied
        self.missing = []    # listed tests that do not exist
        self.env = {}        # extra environment for its tests


def parse(path):
    """Read one .mut file.  Header lines are `key: value`; `file:` starts a
    hunk, whose original is the lines between `<<<` and `===` and whose
    replacement the lines between `===` and `>>>`, taken verbatim."""
    e = Entry(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        ln = lines[i]
        i += 1
        if ln.startswith("#") or not ln.strip():
            continue
        if ln == "<<<":
            if not e.hunks or e.hunks[-1][1] is not None:
                e.problem = "line %d: <<< without a file: line before it" % i
                return e
            orig, repl, part = [], [], "orig"
            while i < len(lines):
                ln = lines[i]
                i += 1
                if ln == "===" and part == "orig":
                    part = "repl"
                elif ln == ">>>" and part == "repl":
                    break
                else:
                    (orig if part == "orig" else repl).append(ln)
            else:
                e.problem = "unterminated <<< ... === ... >>> block"
                return e
            # Whole lines: each block is its lines with their newlines.
            e.hunks[-1][1] = "".join(x + "\n" for x in orig)
            e.hunks[-1][2] = "".join(x + "\n" for x in repl)
            if not orig:
                e.problem = "empty original"
                return e
            continue
        key, sep, val = ln.partition(":")
        key, val = key.strip(), val.strip()
        if not sep:
            e.problem = "line %d: expected 'key: value', got %r" % (i, ln)
            return e
        if key == "desc":
            e.desc = val
        elif key == "tests":
            e.tests = val.split()
        elif key == "env":
            for kv in val.split():
                k, eq, v = kv.partition("=")
                if not eq:
                    e.problem = "line %d: env: wants NAME=VALUE words" % i
                    return e
                e.env[k] = v
        elif key == "file":
            e.hunks.append([val, None, None])
        else:
            e.problem = "line %d: unknown key %r" % (i, key)
            return e
    if not e.desc or not e.tests or not e.hunks:
        e.problem = "needs desc:, tests: and at least one file: with a <<< === >>> block"
    elif any(h[1] is None for h in e.hunks):
        e.problem = "a file: line without its <<< === >>> block"
    return e


def sh(cmd, cwd, log=None, timeout=None, env=None):
    """Run cmd; return (exit status or 'timeout', seconds)."""
    t0 = time.monotonic()
    out = open(log, "a") if log else subprocess.DEVNULL
    try:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            rc = "timeout"
        except BaseException:
            # Interrupted: the child runs in its own session, so stop it
            # here (the caller's finally restores the mutated file).
            os.killpg(p.pid, 9)
            p.wait()
            raise
    finally:
        if log:
            out.close()
    return rc, time.monotonic() - t0


def tracked_files():
    """The working tree's git-tracked files plus untracked, not ignored ones
    (a test being written counts), as repository-relative paths."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
    return sorted({p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))})


def sync_copy(files):
    """Make SRC hold exactly `files` with the working tree's contents,
    rewriting only files that differ so make's timestamps stay useful."""
    want = set(files)
    changed = 0
    for rel in files:
        src, dst = os.path.join(ROOT, rel), os.path.join(SRC, rel)
        with open(src, "rb") as f:
            data = f.read()
        try:
            with open(dst, "rb") as f:
                same = f.read() == data
        except OSError:
            same = False
        if not same:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
            shutil.copymode(src, dst)
            changed += 1
    # Files deleted from the tree go from the copy too (not build/).
    for dirpath, dirnames, filenames in os.walk(SRC):
        rel_dir = os.path.relpath(dirpath, SRC)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if not d.startswith("build")]
        for fn in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, fn))
            if rel not in want:
                os.unlink(os.path.join(dirpath, fn))
                changed += 1
    return changed


def resolve(rel, files):
    """The file a hunk names; when the path is gone (files move), the one
    tracked file with that basename (under the same top directory when
    there are several)."""
    if rel in files:
        return rel, None
    base = os.path.basename(rel)
    cands = [p for p in files if os.path.basename(p) == base]
    if len(cands) > 1:
        # core/config.c moved to core/engine/config.c: prefer the one
        # under the same top directory over indexer/config.c.
        top = rel.split("/")[0] + "/"
        same = [p for p in cands if p.startswith(top)]
        if len(same) == 1:
            cands = same
    if len(cands) == 1:
        return cands[0], None
    if not cands:
        return None, "%s: no such file, nor any file named %s" % (rel, base)
    return None, "%s: gone, and %d files are named %s (%s)" % (rel, len(cands), base, " ".join(cands))


def count_lines_match(text, orig):
    """Occurrences of orig (whole lines) in text, and the offset of the first."""
    hay = "\n" + text
    n, at, pos = 0, -1, hay.find("\n" + orig)
    while pos >= 0:
        n += 1
        if at < 0:
            at = pos
        pos = hay.find("\n" + orig, pos + 1)
    return n, at


def test_path(name):
    """tests/cli/NN-x.t (or NN-x.t) for a CLI test, else a unit test binary."""
    if name.endswith(".t"):
        return name if "/" in name else os.path.join("tests", "cli", name), True
    return os.path.join("build", "tests", os.path.basename(name)), False


def make_targets(tests):
    t = []
    for name in tests:
        p, cli = test_path(name)
        t.append("tests-cli-build" if cli else p)
    return sorted(set(t))


def test_env():
    env = dict(os.environ)
    env["CLIPDEX_BUILD"] = "build"
    env["PYTHON"] = PYTHON
    # as `make check` runs them: the parity tests compare float32 with
    # float32 (12-precision.t asks for the other precisions itself)
    env["CLIPDEX_PRECISION"] = "f32"
    env.setdefault("CLIPDEX_SHARED", os.path.abspath(os.path.join(ROOT, "..", "shared")))
    return env


def on_term(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_term)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", "--keep-going", action="store_true", help="go on after a survivor")
    ap.add_argument("-j", type=int, default=2, help="make -j (default 2)")
    ap.add_argument("--list", action="store_true", help="list the entries and exit")
    ap.add_argument("ids", nargs="*")
    a = ap.parse_args()

    entries = [parse(p) for p in sorted(glob.glob(os.path.join(MUTDIR, "*.mut")))]
    if a.ids:
        sel = [e for e in entries if any(e.id == i or e.id.startswith(i) for i in a.ids)]
        unknown = [i for i in a.ids if not any(e.id == i or e.id.startswith(i) for e in entries)]
        if unknown:
            print("mutation-check: no entry %s" % ", ".join(unknown), file=sys.stderr)
            return 2
        entries = sel
    if a.list:
        for e in entries:
            print("%-28s %s" % (e.id, e.desc))
        return 0
    if not entries:
        print("mutation-check: no entries in %s" % MUTDIR, file=sys.stderr)
        return 2

    t_start = time.monotonic()
    os.makedirs(LOGS, exist_ok=True)
    files = tracked_files()
    fileset = set(files)

    # Static checks: every original occurs exactly once, every test exists.
    for e in entries:
        if e.problem:
            continue
        for h in e.hunks:
            real, err = resolve(h[0], fileset)
            if err:
                e.problem = err
                break
            h[0] = real
            with open(os.path.join(ROOT, real), encoding="utf-8") as f:
                n, _ = count_lines_match(f.read(), h[1])
            if n != 1:
                e.problem = "%s: the original occurs %d times (must be exactly once)" % (real, n)
                break
        if e.problem:
            continue
        # A test that does not exist (yet) is reported and fails the run,
        # but the others still show whether the mutant survives today.
        for name in e.tests:
            p, cli = test_path(name)
            src = p if cli else os.path.join("tests", "unit", os.path.basename(name) + ".c")
            if src not in fileset:
                e.missing.append(name)
        e.tests = [t for t in e.tests if t not in e.missing]
        if not e.tests:
            e.problem = "none of its tests exists (%s)" % " ".join(e.missing)
    for e in entries:
        if e.problem:
            e.result = "BROKEN"

    # The scratch copy, its build directory and test data.
    n = sync_copy(files)
    print("mutation-check: %s: %d files refreshed" % (os.path.relpath(SRC, ROOT), n), flush=True)
    b = os.path.join(SRC, "build")
    os.makedirs(b, exist_ok=True)
    for name, target in (("faiss", os.path.join(ROOT, "build", "faiss")),
                         ("testdata", os.path.join(WORK, "testdata"))):
        link = os.path.join(b, name)
        os.makedirs(target, exist_ok=True)   # a fresh run: no dangling link
        if not os.path.islink(link):
            if os.path.exists(link):
                shutil.rmtree(link)
            os.symlink(target, link)
    if not os.path.exists(os.path.join(ROOT, "build", "faiss", "libfaiss_c.a")):
        print("mutation-check: build/faiss is missing: run make deps first", file=sys.stderr)
        return 2
    log = os.path.join(LOGS, "baseline.log")
    open(log, "w").close()
    rc, _ = sh([PYTHON, "tests/tools/make_testdata.py", "--out", "build/testdata"], SRC, log)
    if rc != 0:
        print("mutation-check: make_testdata.py failed (see %s)" % log, file=sys.stderr)
        return 2

    live = [e for e in entries if not e.result]
    make = ["make", "-j%d" % a.j, "WERROR=0"]
    targets = sorted({t for e in live for t in make_targets(e.tests)})
    print("mutation-check: building the unmutated copy ...", flush=True)
    rc, secs = sh(make + targets, SRC, log)
    if rc != 0:
        print("mutation-check: the unmutated copy does not build (see %s)" % log, file=sys.stderr)
        return 2
    print("mutation-check: built in %.0f s; running the baseline tests ..." % secs, flush=True)
    env = test_env()
    base_secs, base_bad = {}, set()
    runs = sorted({(t, tuple(sorted(e.env.items()))) for e in live for t in e.tests})
    for run in runs:
        name, extra = run
        rc, secs = sh(["prove", "-v", "-f", test_path(name)[0]], SRC, log, env=dict(env, **dict(extra)),
                      timeout=TEST_TIMEOUT_MIN * 4)
        base_secs[run] = secs
        if rc != 0:
            base_bad.add(run)
        label = name + "".join(" %s=%s" % kv for kv in extra)
        print("  %-32s %s  %5.1f s" % (label, "ok" if rc == 0 else "FAILS", secs), flush=True)
    for e in live:
        bad = [t for t in e.tests if (t, tuple(sorted(e.env.items()))) in base_bad]
        if bad:
            e.result, e.problem = "BROKEN", "fails unmutated: %s" % " ".join(bad)

    # The mutations, one at a time.
    stop = False
    for e in entries:
        if e.result or stop:
            continue
        elog = os.path.join(LOGS, e.id + ".log")
        open(elog, "w").close()
        t0 = time.monotonic()
        try:
            for h in e.hunks:
                path = os.path.join(SRC, h[0])
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                e.backup[path] = text
                _, at = count_lines_match(text, h[1])
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text[:at] + h[2] + text[at + len(h[1]):])
            rc, _ = sh(make + make_targets(e.tests), SRC, elog)
            if rc != 0:
                e.result, e.problem = "BROKEN", "the mutant does not build (see %s)" % os.path.relpath(elog, ROOT)
            else:
                e.result = "SURVIVED"
                for name in e.tests:
                    run = (name, tuple(sorted(e.env.items())))
                    limit = max(TEST_TIMEOUT_MIN, TEST_TIMEOUT_FACTOR * base_secs[run])
                    rc, _ = sh(["prove", "-v", "-f", test_path(name)[0]], SRC, elog,
                               env=dict(env, **e.env), timeout=limit)
                    if rc != 0:
                        e.result = "caught"
                        e.by = name + (" (timeout)" if rc == "timeout" else "")
                        break
        finally:
            for path, text in e.backup.items():
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
        e.seconds = time.monotonic() - t0
        print("  %-28s %-8s %s  %.0f s" % (e.id, e.result, e.by or e.problem or "", e.seconds), flush=True)
        if e.result == "SURVIVED" and not a.keep_going:
            stop = True

    # The table.
    print()
    print("| id | file | tests | result | s |")
    print("|---|---|---|---|---|")
    for e in entries:
        res = {"caught": "caught by %s" % e.by, "SURVIVED": "**SURVIVED**",
               "BROKEN": "**BROKEN**: %s" % e.problem, None: "not run"}[e.result]
        if e.missing and e.result != "BROKEN":
            res += "; missing test %s" % " ".join(e.missing)
        print("| %s | %s | %s | %s | %.0f |" % (e.id, " ".join(h[0] for h in e.hunks), " ".join(e.tests),
                                               res, e.seconds))
    caught = sum(e.result == "caught" for e in entries)
    surv = [e.id for e in entries if e.result == "SURVIVED"]
    broken = [e.id for e in entries if e.result == "BROKEN"]
    notrun = [e.id for e in entries if not e.result]
    print()
    missing = sorted({t for e in entries for t in e.missing})
    print("mutation-check: %d of %d caught, %d survived%s, %d broken%s, %d not run%s; %.0f s" % (
        caught, len(entries), len(surv), (" (" + " ".join(surv) + ")") if surv else "",
        len(broken), (" (" + " ".join(broken) + ")") if broken else "", len(notrun),
        ("; missing tests: " + " ".join(missing)) if missing else "", time.monotonic() - t_start))
    return 0 if caught == len(entries) and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
