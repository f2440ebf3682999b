#!/usr/bin/env bash
# The GPU benchmarks as one script: the engine, text, image and service benchmarks of bench/
# with MCDROP_DEVICE (default cuda), about 5 minutes on one GPU. Each benchmark's output goes to
# OUT/<name>.txt; OUT/gpu.md gathers the device, the commit and every table.
#
#   bench/gpu.sh                              # MCDROP_DEVICE=cuda, the full sizes
#   MCDROP_DEVICE=cpu bench/gpu.sh --quick    # tiny sizes on the CPU: checks the script itself
#
# OUT: where the results go (default bench/results/gpu). PYTHON: the interpreter (default
# .venv/bin/python when there is one, else python3); it needs the bench extra
# (pip install -e ".[bench]") and a CUDA build of torch for cuda. A benchmark that fails or runs
# past its time limit is reported as such and the others still run; the exit status is then 1.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
export MCDROP_DEVICE="${MCDROP_DEVICE:-cuda}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1  # a benchmark stopped at its limit keeps what it printed
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"

# Fails here, in seconds, when the device or a package is missing.
if ! device="$("$PYTHON" - <<'PY'
import platform

import httpx, matplotlib, PIL, transformers  # noqa: F401  (what the four benchmarks import)
import torch

from bench.common import load_options

device = load_options().device
name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
print(f"{device} ({name}), torch {torch.__version__}")
PY
)"; then
  echo "bench/gpu.sh: $PYTHON cannot run the benchmarks on MCDROP_DEVICE=$MCDROP_DEVICE (above)" >&2
  exit 1
fi

# name | time limit (s), full | time limit (s), --quick | full arguments | --quick arguments
# The full limits add up to 570 s: the whole script fits a 10-minute command on the GPU machine.
# The --quick ones are for the CPU of a loaded 2-core machine.
benchmarks=(
  "engine|90|120|--out $out|--out $out --models digits-mlp --samples 10 --batches 1 --repeats 1"
  "text|90|240||--repeats 1 --samples 10 --batches 1"
  "image|90|300||--repeats 1 --vit-layers 1 --image-size 64"
  "service|300|300|--out $out --seconds 5|--out $out --models digits-mlp --workers 1 --client httpx --requests 3"
)

summary="$out/gpu.md"
{
  echo "# bench/gpu.sh$([[ $quick == 1 ]] && echo ' --quick')"
  echo
  echo "$device; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$summary"
status_rows=()
failed=0
for entry in "${benchmarks[@]}"; do
  IFS='|' read -r name limit quick_limit full small <<<"$entry"
  arguments="$full"
  if [[ $quick == 1 ]]; then arguments="$small" limit="$quick_limit"; fi
  log="$out/$name.txt"
  echo "== $name: python -m bench.$name $arguments" >&2
  started=$SECONDS
  # shellcheck disable=SC2086  # the arguments are words
  timeout --signal=TERM --kill-after=10 "$limit" "$PYTHON" -m "bench.$name" $arguments 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  seconds=$((SECONDS - started))
  case "$code" in
    0) result=ok ;;
    124 | 137) result="over its ${limit} s"; failed=1 ;;
    *) result="failed ($code)"; failed=1 ;;
  esac
  status_rows+=("| $name | $result | $seconds |")
  {
    echo
    echo "## $name (\`python -m bench.$name $arguments\`)"
    echo
    # every table of the output, a blank line between two
    awk '/^\|/ { if (gap) print ""; print; seen = 1; gap = 0; next } seen { gap = 1 }' "$log"
    grep -q '^|' "$log" || echo "(no table: see $log)"
  } >>"$summary"
done
{
  echo
  echo "## Runs"
  echo
  echo "| benchmark | result | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${status_rows[@]}"
} >>"$summary"
cat "$summary"
exit "$failed"
