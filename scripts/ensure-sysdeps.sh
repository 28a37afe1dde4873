#!/usr/bin/env bash
# Installs the Debian tools the test suite drives, when missing. Needs root (as CI runs);
# without root it only says what is missing and the tests that need them skip.
set -eu
need=()
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-sysdeps: missing ${need[*]} (not root: the tests that need them will skip)" >&2
  exit 0
fi
echo "ensure-sysdeps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
