#!/bin/sh
# deps.sh - install everything clipdex needs to build and test, from
# Debian packages.  `make deps` runs this; it is the one place where
# dependencies are installed.  Runs apt-get as root, or through sudo.
set -eu

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Build: compiler, pkg-config, libraries.  Tests: prove (perl), python3 with
# torch/numpy/PIL for the independent reference, valgrind, inotify-tools.
PKGS="build-essential pkg-config perl ca-certificates curl dpkg-dev
  libopenblas-dev libcjson-dev libutf8proc-dev libzip-dev
  libjpeg62-turbo-dev libturbojpeg0-dev libpng-dev libexif-dev
  libwebp-dev libheif-dev libtiff-dev libgif-dev
  libsqlite3-dev sqlite3 libfaiss-dev libinih-dev
  inotify-tools libinotifytools0-dev
  python3 python3-torch python3-numpy python3-pil
  valgrind"

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
