#!/bin/sh
# deps.sh - install everything clipdex needs to build and test, from
# Debian packages.  `make deps` runs this; it is the one place where
# dependencies are installed.  Runs apt-get as root, or through sudo.
set -eu

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Build: compiler, pkg-config, libraries.  Tests: prove (perl), python3 with
# torch/numpy/PIL for the independent reference, valgrind, inotify-tools,
# clang with its sanitizer and libFuzzer runtimes (the image layer's
# sanitizer pass and fuzz smoke run in make check; make fuzz).
PKGS="build-essential pkg-config perl ca-certificates curl dpkg-dev
  clang libclang-rt-14-dev
  libopenblas-dev libdnnl-dev libcjson-dev libutf8proc-dev libzip-dev
  libjpeg62-turbo-dev libturbojpeg0-dev libpng-dev libexif-dev
  libwebp-dev libheif-dev libtiff-dev libgif-dev
  libsqlite3-dev sqlite3 libfaiss-dev libinih-dev libssl-dev
  inotify-tools
  python3 python3-torch python3-numpy python3-pil
  libsentencepiece-dev sentencepiece python3-sentencepiece python3-protobuf
  valgrind
  libmicrohttpd-dev chromium nodejs
  libexempi-dev libiptcdata0-dev libimage-exiftool-perl"
# SigLIP's tokenizers: libsentencepiece (the library), sentencepiece
# (spm_train, for the test models' tokenizers), python3-sentencepiece (the
# tests' oracle).
# clipdex train/eval captions: libexempi (XMP) and libiptcdata (IPTC);
# exiftool (libimage-exiftool-perl) writes the tests' metadata, an
# independent writer for those readers.
# clipdex serve: libmicrohttpd; its browser test drives Debian's chromium
# through puppeteer-core (npm, pinned in tests/browser/package-lock.json).
# npm comes with a NodeSource nodejs, from Debian's npm package otherwise.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
else
    echo "deps: all Debian packages present"
fi

# ---- the browser test's driver (npm) ---------------------------------------
# puppeteer-core, exactly as pinned in the lock file; it never downloads a
# browser (the test runs /usr/bin/chromium), and no install scripts run.
if ! (cd tests/browser && node -e "process.exit(require('./node_modules/puppeteer-core/package.json').version ===
      require('./package.json').dependencies['puppeteer-core'] ? 0 : 1)" 2>/dev/null); then
    echo "deps: npm ci in tests/browser"
    (cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund)
fi


# ---- FAISS C API ----------------------------------------------------------
# Debian's libfaiss-dev ships the C API headers and libfaiss.a but not the
# compiled C API (c_api/*.cpp).  Build it from Debian's own faiss source
# package, of exactly the installed version, into build/faiss/libfaiss_c.a
# (the Makefile links it with libfaiss.a, OpenBLAS, libgomp and libstdc++).
# The source comes through a private apt tree under build/apt, so the
# system's sources.list, package lists and caches are never touched.
# Idempotent: build/faiss/VERSION records the version built.  Nothing of
# FAISS is committed.
FAISS_OUT="build/faiss"
FAISS_VER=$(dpkg-query -W -f='${source:Version}' libfaiss-dev)   # e.g. 1.7.3-2
FAISS_UP=${FAISS_VER%-*}                                           # e.g. 1.7.3
FAISS_STAMP="$FAISS_VER recipe-2"    # bump the recipe number when the build below changes
if [ -f "$FAISS_OUT/libfaiss_c.a" ] && [ "$(cat "$FAISS_OUT/VERSION" 2>/dev/null)" = "$FAISS_STAMP" ]; then
    echo "deps: FAISS C API $FAISS_VER already built in $FAISS_OUT"
else
    echo "deps: building the FAISS C API $FAISS_VER into $FAISS_OUT"
    APT_DIR="$(pwd)/build/apt"
    mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" \
        "$APT_DIR/cache/archives/partial" "$APT_DIR/src"
    # The same mirror as the machine's own configuration (it may be a
    # snapshot or a local mirror).
    MIRROR=$(sed -n 's|^URIs:[[:space:]]*\([^[:space:]]*/debian\)/*[[:space:]]*$|\1|p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$MIRROR" ] || MIRROR=$(sed -n 's|^deb[[:space:]].*[[:space:]]\(https\{0,1\}://[^[:space:]]*/debian\)/*[[:space:]].*|\1|p' \
        /etc/apt/sources.list 2>/dev/null | head -n 1)
    [ -n "$MIRROR" ] || {
        echo "deps: no Debian mirror found in /etc/apt/sources.list(.d); cannot fetch the faiss source" >&2
        exit 1
    }
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main" \
        > "$APT_DIR/sources.list"
    APT_OPTS="-o Dir::Etc::sourcelist=$APT_DIR/sources.list
      -o Dir::Etc::sourceparts=$APT_DIR/sources.list.d
      -o Dir::State::Lists=$APT_DIR/lists
      -o Dir::Cache=$APT_DIR/cache
      -o APT::Sandbox::User=root"
    # APT_OPTS is split into words on purpose (no spaces in our paths).
    apt-get -qq $APT_OPTS update
    SRC="$APT_DIR/src/faiss-$FAISS_UP"
    rm -rf "$SRC"
    # faiss=VERSION pins the exact source version of the installed package.
    (cd "$APT_DIR/src" && apt-get -qq $APT_OPTS source --download-only "faiss=$FAISS_VER" &&
        dpkg-source --no-check -x "faiss_$FAISS_VER.dsc" "faiss-$FAISS_UP" >/dev/null)
    # We compile against the installed headers, which belong to the
    # libfaiss.a we link; the source's headers must be the same files.
    for h in "$SRC"/c_api/*.h "$SRC"/c_api/impl/*.h "$SRC"/c_api/utils/*.h \
             "$SRC"/faiss/*.h "$SRC"/faiss/impl/*.h; do
        rel=${h#"$SRC"/}
        case $rel in c_api/*) inst=/usr/include/faiss/$rel ;; *) inst=/usr/include/$rel ;; esac
        cmp -s "$h" "$inst" || {
            echo "deps: $rel differs from $inst: faiss source $FAISS_VER does not match libfaiss-dev" >&2
            exit 1
        }
    done
    rm -rf "$FAISS_OUT/obj"
    mkdir -p "$FAISS_OUT/obj"
    # Two compiles at a time (the build machines have two cores).  -DNDEBUG
    # as in upstream's release builds: without it every C API call that
    # fails also prints the exception on stderr, and libclipdex never prints.
    ls "$SRC"/c_api/*.cpp "$SRC"/c_api/impl/*.cpp "$SRC"/c_api/utils/*.cpp |
        xargs -P 2 -I{} sh -c 'f="$1"; d=$(basename "$(dirname "$f")"); \
            exec g++ -std=c++17 -O2 -DNDEBUG -fPIC -fopenmp -w -c "$f" -o "$2/${d}_$(basename "$f" .cpp).o"' \
            sh {} "$FAISS_OUT/obj"
    rm -f "$FAISS_OUT/libfaiss_c.a"
    ar rcs "$FAISS_OUT/libfaiss_c.a" "$FAISS_OUT"/obj/*.o
    echo "$FAISS_STAMP" > "$FAISS_OUT/VERSION"
    echo "deps: FAISS C API built: $FAISS_OUT/libfaiss_c.a"
fi
