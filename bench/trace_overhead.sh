#!/bin/bash
# Tracing cost side by side: bench/throughput.py alternately without and with
# USTACK_TRACE (docs/trace.md, "Cost").  Needs root (the bench's lab).
#   bench/trace_overhead.sh [ROUNDS] [extra throughput.py args, e.g. --no-gso]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
py=${PYTHON:-.venv/bin/python}
dir=$(mktemp -d /tmp/ustack-trace-overhead.XXXXXX)
trap 'rm -rf "$dir"' EXIT
for i in $(seq "$rounds"); do
  for mode in off on; do
    rm -rf "$dir/t" && mkdir -p "$dir/t"
    if [[ $mode == on ]]; then export USTACK_TRACE=$dir/t; else unset USTACK_TRACE; fi
    out=$(PYTHONPATH=$PWD "$py" bench/throughput.py --only up,down --mb 200 "$@" 2>&1 | tr '\n' ' ')
    echo "$mode $i $out traces=$(du -sh "$dir/t" | cut -f1)"
  done
done
