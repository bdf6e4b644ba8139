#!/usr/bin/env bash
# Installs the Debian packages that building and testing qtool need, when
# they are missing (as root, or through sudo); otherwise prints the command.
set -u
# Arguments replace the list (make test-slurm: slurm-wlm munge parallel).
pkgs=${*:-"gcc make pkg-config libzstd-dev libcjson-dev libcriterion-dev procps time parallel"}
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get update && apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
  echo "make deps: installing$missing" >&2
  sh -c "DEBIAN_FRONTEND=noninteractive $cmd" >&2 || { echo "make deps: install failed" >&2; exit 1; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "make deps: installing$missing (sudo)" >&2
  sudo sh -c "DEBIAN_FRONTEND=noninteractive $cmd" >&2 || { echo "make deps: install failed" >&2; exit 1; }
else
  echo "make deps: missing packages:$missing" >&2
  echo "run as root:  $cmd" >&2
  exit 1
fi
