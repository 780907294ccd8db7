#!/bin/sh
# Install Debian/Ubuntu packages rulab can use: dataset-fashion-mnist (offline Fashion-MNIST) and chromium
# (the report's browser test). Usage: system-deps.sh [--optional] PACKAGE...
# Without root or apt-get it prints what to run and exits 1 (0 with --optional).
optional=0
if [ "$1" = "--optional" ]; then optional=1; shift; fi
missing=""
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != "none" ]; then
    echo "installing system packages:$missing"
    $SUDO apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null 2>&1 && exit 0
  fi
fi
echo "could not install:$missing; run: sudo apt-get install$missing" >&2
[ $optional -eq 1 ] && exit 0
exit 1
