#!/usr/bin/env bash
# Download, here, the wheels that the GPU machine lacks for scripts/gpu_check.sh, into .whl/ (git-ignored):
#     bash scripts/gpu_wheels.sh
# The machine has Python 3.12 with torch, torchvision, numpy, scipy, matplotlib, seaborn, tqdm, pytest and
# attrs, but not these: the test-only references (torchattacks, captum), AutoAttack (pyautoattack) and
# nbformat with what it needs (the notebook tests read notebooks). The versions are those the CPU suite
# runs with. There, the one-line command of docs/gpu.md#the-command-still-to-run installs them with
# pip --no-index --no-deps into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
pure=(torchattacks==3.5.1 pyautoattack==0.2.0 captum==0.9.0 nbformat==5.11.1 fastjsonschema==2.22.3
      jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 jupyter_core==5.9.1
      platformdirs==4.14.9 traitlets==5.16.1)
binary=(rpds-py==2026.9.1)   # compiled: the machine's CPython 3.12 on x86-64 Linux
rm -rf .whl && mkdir -p .whl
"$py" -m pip download -q --no-deps -d .whl "${pure[@]}"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${binary[@]}"
ls .whl && du -sh .whl
