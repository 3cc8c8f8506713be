#!/usr/bin/env bash
# The notebooks under nbval on other CPU kernel paths and thread counts than the ones that stored
# their outputs: what a second machine would see. Prints one line of pass/fail counts per setting;
# logs go to $1 (default nbval-kernels/). Exits 1 if any setting failed a cell.
#   bash scripts/nbval_kernels.sh [log folder]        (about 4 x 10 minutes on 2 cores)
# SETTINGS picks settings by name (default: all four below).
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-nbval-kernels}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
declare -A env_of=(
    [avx2]="ATEN_CPU_CAPABILITY=avx2"
    [default]="ATEN_CPU_CAPABILITY=default"
    [onednn-avx2]="ONEDNN_MAX_CPU_ISA=AVX2"
    [one-thread]="OMP_NUM_THREADS=1"
)
settings=${SETTINGS:-avx2 default onednn-avx2 one-thread}
for name in $settings; do
    [[ -n ${env_of[$name]+x} ]] || { echo "unknown setting '$name'; choose from: ${!env_of[*]}" >&2; exit 2; }
done
status=0
for name in $settings; do
    # a fresh runs folder and no cache: every number computed under this setting
    runs=$(mktemp -d)
    env ${env_of[$name]} NSLIB_QUICK=1 NSLIB_CACHE=0 NSLIB_RUNS="$runs" "$py" -m pytest notebooks --nbval --nbval-current-env \
        --nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout 600 -p no:cacheprovider -q -rf \
        > "$out/$name.log" 2>&1 || status=1
    rm -rf "$runs"
    echo "$name (${env_of[$name]}): $(tail -n 1 "$out/$name.log")"
done
exit $status
