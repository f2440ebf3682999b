#!/usr/bin/env bash
# Clone-to-ready: a fresh clone of this repository, then `make serve` (venv, install, serve the
# bundled models), timed until /v2/health/ready answers 200 (install_s: until make starts the
# server, start_s: the server's start-up after it); then the venv's size, its package count and
# the 1-minute load average. One line of results on stdout (the make/server log stays in WORK).
#
#   bench/install.sh [REF] [--keep]
#
# REF: a branch or commit of this repository (default: HEAD). --keep leaves the clone (and its
# venv) in place; otherwise it is removed. MCDROP_PORT picks the port (default: a free one);
# WORK the scratch folder (default: a new one under /tmp). pip's own cache and configuration are
# used as they are: say which when you report a number (a warm cache makes installs faster).
set -euo pipefail

ref=HEAD
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) ref="$arg" ;;
  esac
done

source_repo="$(git -C "$(dirname "$0")" rev-parse --path-format=absolute --git-common-dir)"
commit="$(git -C "$(dirname "$0")" rev-parse --verify "$ref^{commit}")"
work="${WORK:-$(mktemp -d /tmp/mcdrop-install.XXXXXX)}"
port="${MCDROP_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
clone="$work/mcdrop"
log="$work/make-serve.log"
server=""

cleanup() {
  if [[ -n "$server" ]]; then
    kill -TERM -- "-$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [[ "$keep" == 0 ]]; then rm -rf "$clone"; fi
}
trap cleanup EXIT

started="$(date +%s.%N)"
git clone --quiet --no-checkout "$source_repo" "$clone"
git -C "$clone" checkout --quiet "$commit"
cd "$clone"
# Its own process group, so that the server that make starts is stopped with it.
MCDROP_PORT="$port" setsid make serve >"$log" 2>&1 &
server=$!
installed=""
until curl --silent --fail --max-time 2 "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do
  # The install is over once make has started the server (in make's process group).
  if [[ -z "$installed" ]] && pgrep -g "$server" -f 'bin/mcdrop serve' >/dev/null; then
    installed="$(date +%s.%N)"
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "make serve stopped before the server was ready; its log ($log):" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
ready="$(date +%s.%N)"
venv_mib="$(du -sm .venv | cut -f1)"
packages="$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | wc -l)"
times="$(python3 -c "
ready, started, installed = $ready, $started, ${installed:-0} or $ready
print(f'clone_to_ready_s={ready - started:.1f} install_s={installed - started:.1f} start_s={ready - installed:.1f}')")"
load="$(cut -d' ' -f1 /proc/loadavg)"
echo "commit=${commit:0:10} $times venv_mib=$venv_mib packages=$packages load1=$load log=$log"
